#define _GNU_SOURCE
#include <sys/syscall.h>
#include "CApusSys.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/filter.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/openat2.h>

int apus_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int apus_epoll_add(int epfd, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = { .events = events, .data.u64 = data };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int apus_epoll_mod(int epfd, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = { .events = events, .data.u64 = data };
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

int apus_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int apus_epoll_wait(int epfd, apus_event *out, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) { out[i].events = evs[i].events; out[i].data = evs[i].data.u64; }
    return n;
}

int apus_accept(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int apus_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
int apus_gettid(void) { return (int)syscall(SYS_gettid); }

int apus_pipe_cloexec(int fds[2], int nonblock) {
    return pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
}

int apus_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
int apus_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
int apus_set_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }
void apus_set_environ(char **env) { extern char **environ; environ = env; }

ssize_t apus_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count) {
    off_t off = (off_t)*offset;
    ssize_t n = sendfile(out_fd, in_fd, &off, count);
    *offset = (int64_t)off;
    return n;
}

int apus_open_directory(const char *path) { return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC); }

int apus_open_beneath(int dirfd, const char *path) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int apus_file_facts(int fd, int64_t *size, int64_t *mtime_sec, int64_t *mtime_nsec) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    if (!S_ISREG(st.st_mode)) return 0;
    *size = (int64_t)st.st_size;
    *mtime_sec = (int64_t)st.st_mtim.tv_sec;
    *mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
    return 1;
}

int apus_set_nonblocking(int fd, int on) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

int apus_tcp_nodelay(int fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int apus_signal(int sig, void (*handler)(int)) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler; sigemptyset(&sa.sa_mask); sa.sa_flags = 0;
    return sigaction(sig, &sa, NULL);
}

int apus_signal_default(int sig) { return apus_signal(sig, SIG_DFL); }
int apus_signal_ignore(int sig) { return apus_signal(sig, SIG_IGN); }

int apus_unblock_all_signals(void) {
    sigset_t s; sigemptyset(&s);
    return sigprocmask(SIG_SETMASK, &s, NULL);
}

ssize_t apus_send_once(int fd, const void *buf, size_t len) {
    return send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

int apus_sigrtmin(void) { return SIGRTMIN; }

int apus_block_signals_except(int sig) {
    sigset_t s; sigfillset(&s); sigdelset(&s, sig);
    return pthread_sigmask(SIG_SETMASK, &s, NULL);
}

int apus_signal_this_thread(int sig) { return pthread_kill(pthread_self(), sig); }

pid_t apus_fork_clean(void) {
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid != 0) {
        int saved = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        errno = saved;
        return pid;
    }
    // The child: no handler of the parent's may run here. They write to descriptors the
    // child closes and then reuses for its own sockets.
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) != 0) continue;
        if (sa.sa_handler == SIG_IGN && !(sa.sa_flags & SA_SIGINFO)) continue;
        if (sa.sa_handler == SIG_DFL && !(sa.sa_flags & SA_SIGINFO)) continue;
        apus_signal(sig, SIG_DFL);
    }
    apus_signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    return 0;
}

long apus_open_files_limit(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    return r.rlim_cur == RLIM_INFINITY || r.rlim_cur > (1L << 30) ? (1L << 30) : (long)r.rlim_cur;
}

long apus_raise_open_files_limit(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
    return apus_open_files_limit();
}

int apus_getresuid(uid_t *r, uid_t *e, uid_t *s) { return getresuid(r, e, s); }
int apus_getresgid(gid_t *r, gid_t *e, gid_t *s) { return getresgid(r, e, s); }

int apus_tmpfile(const char *dir) { return open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600); }

int apus_memfd(const char *name, long size) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (ftruncate(fd, size) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int apus_set_cloexec(int fd, int on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC));
}

int apus_block_all_signals(void) {
    sigset_t all;
    sigfillset(&all);
    return sigprocmask(SIG_SETMASK, &all, NULL);
}

int apus_attach_reuseport_index(int fd, unsigned index) {
    struct sock_filter code[1] = { BPF_STMT(BPF_RET | BPF_K, index) };
    struct sock_fprog prog = { .len = 1, .filter = code };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog));
}

/* Atomics on memory shared between processes (the scoreboard): sequentially consistent,
   lock-free on every platform Apus builds for. */
unsigned apus_atomic_load_u32(const unsigned *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
void apus_atomic_store_u32(unsigned *p, unsigned v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
int apus_atomic_cas_u32(unsigned *p, unsigned expected, unsigned desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

unsigned apus_atomic_add_u32(unsigned *p, int delta) {
    return __atomic_add_fetch(p, (unsigned)delta, __ATOMIC_SEQ_CST);
}

long apus_file_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    return (long)st.st_size;
}
