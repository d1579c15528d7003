#if canImport(Glibc)
import Glibc
#endif
import ApusConfig

/// `apus --from-gunicorn FILE`: a gunicorn.conf.py is Python, and running it to learn its
/// settings would run whatever else it does (imports, hooks, side effects). Instead python3
/// parses it with its own `ast` module (the exact grammar of the Python that will run the
/// app, which a parser of our own would only approximate) and evaluates nothing but
/// literals (`ast.literal_eval`); every other right-hand side is reported as computed, with
/// its source text. The child runs isolated (-I: no PYTHON* variables, no user site, no
/// script directory on sys.path) and without `site` (-S): it imports only ast and sys.
public enum GunicornConfigReader {
    /// Prints one record a line (see `parseGunicornRecords`): value, computed, other,
    /// function; `error` with a message when the file cannot be read or parsed.
    static let script = #"""
import ast, sys
def esc(s):
    return s.replace('\\', '\\\\').replace('\t', '\\t').replace('\n', '\\n').replace('\r', '\\r')
def out(*fields):
    print('\t'.join(esc(str(f)) for f in fields))
def scalar(v):
    if v is None: return ['n']
    if isinstance(v, bool): return ['b', '1' if v else '0']
    if isinstance(v, int): return ['i', str(v)]
    if isinstance(v, float): return ['f', repr(v)]
    if isinstance(v, str): return ['s', v]
    return None
path = sys.argv[1]
try:
    with open(path, encoding='utf-8') as f: src = f.read()
    tree = ast.parse(src, path)
except SyntaxError as e:
    out('error', 0, 'syntax error at line %s: %s' % (e.lineno, e.msg)); sys.exit(0)
except (OSError, UnicodeDecodeError, ValueError) as e:
    out('error', 0, str(e)); sys.exit(0)
for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        out('function', node.lineno, node.name); continue
    if isinstance(node, ast.Assign): targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None: targets, value = [node.target], node.value
    else: continue
    text = ast.get_source_segment(src, value) or ''
    for t in targets:
        if not isinstance(t, ast.Name): continue
        try: v = ast.literal_eval(value)
        except Exception: out('computed', node.lineno, t.id, text); continue
        fields = scalar(v)
        if fields is None and isinstance(v, (list, tuple)):
            items = [scalar(i) for i in v]
            fields = None if any(i is None for i in items) else ['l'] + [x for i in items for x in i]
        if fields is None: out('other', node.lineno, t.id, text)
        else: out('value', node.lineno, t.id, *fields)
"""#

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The literal settings of `file`, parsed by the python3 that `--python`/`--venv` (or
    /// PATH) gives.
    public static func read(_ file: String, python: String?, venv: String?) throws(Failure) -> [GunicornSetting] {
        guard access(file, R_OK) == 0 else { throw Failure(description: "--from-gunicorn: cannot read \(file)") }
        let program: String
        do {
            program = try PythonDiscovery.interpreter(python.map { .interpreter($0) } ?? venv.map { .venv($0, besideBinary: false) } ?? .searchPath)
        } catch {
            throw Failure(description: "--from-gunicorn: \(error.description)")
        }
        guard let output = PythonDiscovery.run(program, ["-I", "-S", "-c", script, file]) else {
            throw Failure(description: "--from-gunicorn: \(program) could not parse \(file)")
        }
        if output.hasPrefix("error\t") {
            let message = output.split(separator: "\t", maxSplits: 2).last.map { $0.split(separator: "\n").first ?? "" } ?? ""
            throw Failure(description: "--from-gunicorn: \(file): \(message)")
        }
        return parseGunicornRecords(output)
    }
}
