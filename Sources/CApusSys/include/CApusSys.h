// Thin wrappers over Linux calls that Swift's Glibc module does not expose (epoll, accept4,
// prctl, sendfile, eventfd, getresuid). No logic lives here: every function is one call.
#ifndef CAPUSSYS_H
#define CAPUSSYS_H
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

/// One epoll event, unpacked (the kernel's struct is packed on x86_64).
typedef struct { uint32_t events; uint64_t data; } apus_event;

enum {
    APUS_EPOLLIN = 0x001, APUS_EPOLLOUT = 0x004, APUS_EPOLLERR = 0x008,
    APUS_EPOLLHUP = 0x010, APUS_EPOLLRDHUP = 0x2000,
    APUS_EPOLLEXCLUSIVE = 1u << 28, APUS_EPOLLONESHOT = 1u << 30, APUS_EPOLLET = 1u << 31,
};

int apus_epoll_create(void);
int apus_epoll_add(int epfd, int fd, uint32_t events, uint64_t data);
int apus_epoll_mod(int epfd, int fd, uint32_t events, uint64_t data);
int apus_epoll_del(int epfd, int fd);
int apus_epoll_wait(int epfd, apus_event *events, int max, int timeout_ms);

/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC.
int apus_accept(int fd, struct sockaddr *addr, socklen_t *len);
int apus_eventfd(void);
/// The calling thread's id (gettid).
int apus_gettid(void);
int apus_pipe_cloexec(int fds[2], int nonblock);
int apus_set_pdeathsig(int sig);
int apus_set_child_subreaper(void);
int apus_set_name(const char *name);
/// Points `environ` at `env` (Swift sees `environ` as read-only): the process titles move
/// the environment strings to the heap before taking over their area.
void apus_set_environ(char **env);
ssize_t apus_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
/// open(2) of a directory with O_PATH | O_DIRECTORY | O_CLOEXEC: a handle to open files beneath.
int apus_open_directory(const char *path);
/// openat2(2) of `path` under `dirfd` for reading: O_RDONLY | O_NONBLOCK (a FIFO or a device
/// never blocks the open) | O_CLOEXEC | O_NOCTTY, resolved with RESOLVE_BENEATH (no `..`,
/// absolute path or symbolic link leads outside `dirfd`) | RESOLVE_NO_MAGICLINKS.
int apus_open_beneath(int dirfd, const char *path);
/// fstat: 1 and the size and modification time for a regular file, 0 for anything else,
/// -1 with errno on failure.
int apus_file_facts(int fd, int64_t *size, int64_t *mtime_sec, int64_t *mtime_nsec);
int apus_set_nonblocking(int fd, int on);
int apus_tcp_nodelay(int fd);

/// Signal helpers for the master's self-pipe: install `handler` for `sig` with SA_RESTART off.
int apus_signal(int sig, void (*handler)(int));
int apus_signal_default(int sig);
int apus_signal_ignore(int sig);
int apus_unblock_all_signals(void);
/// send(2) with MSG_NOSIGNAL | MSG_DONTWAIT: one try, never blocking nor raising SIGPIPE.
ssize_t apus_send_once(int fd, const void *buf, size_t len);
/// SIGRTMIN as this libc counts it (a function call in C, not a constant).
int apus_sigrtmin(void);
/// Blocks every signal but `sig` for the calling thread (pthread_sigmask).
int apus_block_signals_except(int sig);
/// Sends `sig` to the calling thread (pthread_kill on pthread_self): its handler has run
/// when this returns.
int apus_signal_this_thread(int sig);
/// fork(2) with every signal blocked around it; the child resets every handled signal to
/// its default, ignores SIGPIPE and unblocks everything before it returns 0, so no handler
/// of the parent's ever runs in it.
pid_t apus_fork_clean(void);
/// The soft RLIMIT_NOFILE (capped at 2^30), or -1.
/// A memory file (memfd) of `size` bytes, close-on-exec; -1 with errno on failure.
int apus_memfd(const char *name, long size);
/// Sets (on != 0) or clears close-on-exec on fd.
int apus_set_cloexec(int fd, int on);
/// Blocks every signal (kept across execve) and returns 0; the new image unblocks.
int apus_block_all_signals(void);
long apus_open_files_limit(void);
/// Raises the soft RLIMIT_NOFILE to the hard one; returns the new soft limit.
long apus_raise_open_files_limit(void);

/// The real, effective and saved user and group ids (getresuid, getresgid).
int apus_getresuid(uid_t *real, uid_t *effective, uid_t *saved);
int apus_getresgid(gid_t *real, gid_t *effective, gid_t *saved);

/// An unnamed temporary file in `dir` (O_TMPFILE), or -1.
int apus_tmpfile(const char *dir);
/// Attaches to `fd`'s reuse-port group a classic BPF program of one instruction that returns
/// `index` (SO_ATTACH_REUSEPORT_CBPF): every new connection goes to the group's member at
/// that index, or by the kernel's hash when there is none.
int apus_attach_reuseport_index(int fd, unsigned index);

/// Sequentially consistent atomics on memory shared between processes (the scoreboard).
unsigned apus_atomic_load_u32(const unsigned *p);
void apus_atomic_store_u32(unsigned *p, unsigned v);
/// 1 when *p was `expected` and is now `desired`, else 0.
int apus_atomic_cas_u32(unsigned *p, unsigned expected, unsigned desired);
/// Adds `delta` to *p (wrapping) and returns the new value.
unsigned apus_atomic_add_u32(unsigned *p, int delta);
/// The size of the file open as fd, or -1.
long apus_file_size(int fd);
#endif
