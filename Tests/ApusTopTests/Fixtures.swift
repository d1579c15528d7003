@testable import ApusTop

// Stats documents for the tests: one as Apus writes it (uWSGI's fields and the Apus extras,
// during a graceful reload) and one as uWSGI 2.0 wrote it (captured from `uwsgi --stats`).

enum TopFixtures {
    static let apusDocument = """
    {"version": "apus 0.1.0", "listen_queue": 0, "listen_queue_errors": 0, "signal_queue": 0,
     "load": 0, "pid": 4100, "uid": 0, "gid": 0, "cwd": "/srv", "locks": [],
     "sockets": [{"name": "127.0.0.1:8000", "proto": "http", "queue": 0, "max_queue": 128, "shared": 0, "can_offload": 0}],
     "workers": [
      {"id": 1, "pid": 4101, "accepting": 1, "requests": 100, "delta_requests": 3, "exceptions": 0,
       "harakiri_count": 0, "signals": 0, "signal_queue": 0, "status": "busy", "rss": 31457280,
       "vsz": 0, "running_time": 150000, "last_spawn": 1796300000, "respawn_count": 0, "tx": 1000,
       "avg_rt": 1500, "apps": [], "cores": [{"id": 0, "requests": 100, "static_requests": 0,
       "routed_requests": 0, "offloaded_requests": 0, "write_errors": 0, "read_errors": 0,
       "in_request": 1, "vars": [], "req_info": {"request_start": 1796300100.5}}],
       "generation": 3, "state": "retiring", "last_rt": 2250, "connections": 1,
       "in_progress": [{"core": 0, "request": "GET /slow?x=1", "seconds": 1.25}]},
      {"id": 2, "pid": 4102, "accepting": 1, "requests": 7, "status": "idle", "rss": 20971520,
       "avg_rt": 800, "generation": 4, "state": "ready", "last_rt": 700, "connections": 0,
       "in_progress": [], "cores": []}
     ],
     "apus": {"generation": 3, "incoming": 4, "reload": "graceful", "reloads": 2, "ready": true,
              "stopping": false, "workers_wanted": 2, "requests": 1107, "started_on": 1796290000}}
    """

    static let uwsgiDocument = """
    {"version": "2.0.31", "listen_queue": 0, "listen_queue_errors": 0, "signal_queue": 0, "load": 0,
     "pid": 7981, "uid": 0, "gid": 0, "cwd": "/tmp/toptry", "locks": [{"user 0": 0}, {"signal": 0}],
     "sockets": [{"name": "127.0.0.1:44431", "proto": "uwsgi", "queue": 0, "max_queue": 100, "shared": 0, "can_offload": 0}],
     "workers": [
      {"id": 1, "pid": 7983, "accepting": 1, "requests": 0, "delta_requests": 0, "exceptions": 0,
       "harakiri_count": 0, "signals": 0, "signal_queue": 0, "status": "busy", "rss": 0, "vsz": 0,
       "running_time": 0, "last_spawn": 1796304354, "respawn_count": 1, "tx": 0, "avg_rt": 0,
       "apps": [{"id": 0, "modifier1": 0, "mountpoint": "", "startup_time": 0, "requests": 1, "exceptions": 0, "chdir": ""}],
       "cores": [{"id": 0, "requests": 0, "static_requests": 0, "routed_requests": 0, "offloaded_requests": 0,
        "write_errors": 0, "read_errors": 0, "in_request": 1,
        "vars": ["REQUEST_METHOD=GET", "REQUEST_URI=/slow", "PATH_INFO=/slow", "QUERY_STRING=", ""],
        "req_info": {"request_start": 1796304356}}]},
      {"id": 2, "pid": 7984, "accepting": 1, "requests": 1, "delta_requests": 1, "exceptions": 0,
       "harakiri_count": 0, "signals": 0, "signal_queue": 0, "status": "idle", "rss": 0, "vsz": 0,
       "running_time": 298, "last_spawn": 1796304354, "respawn_count": 1, "tx": 47, "avg_rt": 149,
       "apps": [], "cores": [{"id": 0, "requests": 1, "static_requests": 0, "routed_requests": 0,
        "offloaded_requests": 0, "write_errors": 0, "read_errors": 0, "in_request": 0, "vars": [], "req_info": {}}]}
     ]}
    """

    static func snapshot(_ text: String, now: Double = 1796304358) throws -> StatsSnapshot {
        try StatsSnapshot(try JSON.parse(Array(text.utf8)), now: now)
    }
}
