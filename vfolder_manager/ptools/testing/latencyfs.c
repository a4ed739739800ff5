/*
 * latencyfs (native): a simulated NAS.  A multithreaded libfuse3 passthrough
 * filesystem that sleeps DELAY microseconds before serving every request,
 * with attribute, entry and negative caching off, so every lookup, getattr,
 * readdir, unlink... is one "round trip" and a client gains only by keeping
 * many requests in flight.  Unlike the pyfuse3 server (latencyfs.py), which
 * saturates one CPU at ~11k requests/s, this one serves requests on up to
 * THREADS threads (a fixed pool, default 256), so the simulated server, not the Python
 * interpreter, is the limit.
 *
 *   latencyfs-c SOURCE MOUNTPOINT DELAY_US STATS_JSON [THREADS]
 *
 * Runs in the foreground until unmounted (fusermount3 -u MOUNTPOINT), then
 * writes {"ops", "max_inflight", "seconds", "delay"} to STATS_JSON (also on
 * SIGUSR1).  Built on demand by latencyfs.py (gcc, pkg-config fuse3).
 */
#define FUSE_USE_VERSION 35
#define _GNU_SOURCE
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <pthread.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int src_fd = -1;
static long delay_us;
static const char *stats_path;
static long ops, inflight, max_inflight;
static struct timespec started;

static void dump_stats(void) {
    if (!stats_path) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (now.tv_sec - started.tv_sec) + (now.tv_nsec - started.tv_nsec) / 1e9;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", stats_path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    fprintf(f, "{\"ops\": %ld, \"max_inflight\": %ld, \"seconds\": %.3f, \"delay\": %.6f, \"cpu\": %.3f}\n",
            __atomic_load_n(&ops, __ATOMIC_RELAXED), __atomic_load_n(&max_inflight, __ATOMIC_RELAXED),
            secs, delay_us / 1e6, cpu);
    fclose(f);
    rename(tmp, stats_path);
}
static void on_usr1(int sig) { (void)sig; dump_stats(); }

/* LATENCYFS_TRACE=FILE: the start time (us since mount) of every request,
 * written at exit, to see a client's critical path */
static long *trace; static const char **trace_op; static long trace_cap;
static long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - started.tv_sec) * 1000000L + (t.tv_nsec - started.tv_nsec) / 1000;
}

/* every delayed request: count it, track concurrency, sleep */
#define rtt_begin() rtt_begin_(__func__ + 4)
static void rtt_begin_(const char *op) {
    long i = __atomic_fetch_add(&ops, 1, __ATOMIC_RELAXED);
    if (trace && i < trace_cap) { trace[i] = now_us(); trace_op[i] = op; }
    long n = __atomic_add_fetch(&inflight, 1, __ATOMIC_RELAXED);
    long m = __atomic_load_n(&max_inflight, __ATOMIC_RELAXED);
    while (n > m && !__atomic_compare_exchange_n(&max_inflight, &m, n, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    if (delay_us > 0) {
        struct timespec ts = { delay_us / 1000000, (delay_us % 1000000) * 1000 };
        while (nanosleep(&ts, &ts) && errno == EINTR);
    }
}
static int rtt_end(int rc) {
    __atomic_sub_fetch(&inflight, 1, __ATOMIC_RELAXED);
    return rc;
}
#define RTT(expr) do { rtt_begin(); int rc_ = (expr) ? -errno : 0; return rtt_end(rc_); } while (0)

/* FUSE paths start with '/'; make them relative to the source directory fd */
static const char *rel(const char *path) {
    while (*path == '/') path++;
    return *path ? path : ".";
}

static void set_owner(const char *p) {
    struct fuse_context *c = fuse_get_context();
    fchownat(src_fd, p, c->uid, c->gid, AT_SYMLINK_NOFOLLOW);
}

static void *lfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    /* lookups and readdirs in one directory must not serialize in the kernel */
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    /* releases are background requests, 12 at a time by default: a client
     * with hundreds of opens in flight then leaves the server holding a backing
     * fd per file it closed long ago (a parallel copy of 100,000 files ran it
     * out of 20,000), which no NAS does */
    conn->max_background = 1024;
    conn->congestion_threshold = 768;
    cfg->use_ino = 1;
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    cfg->nullpath_ok = 0;
    cfg->kernel_cache = 0;
    cfg->direct_io = 0;
    return NULL;
}

static int lfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    rtt_begin();
    int rc = fi ? fstat((int)fi->fh, st) : fstatat(src_fd, rel(path), st, AT_SYMLINK_NOFOLLOW);
    return rtt_end(rc ? -errno : 0);
}

static int lfs_readlink(const char *path, char *buf, size_t size) {
    rtt_begin();
    ssize_t n = readlinkat(src_fd, rel(path), buf, size - 1);
    if (n < 0) return rtt_end(-errno);
    buf[n] = 0;
    return rtt_end(0);
}

static int lfs_mknod(const char *path, mode_t mode, dev_t rdev) {
    rtt_begin();
    int rc = mknodat(src_fd, rel(path), mode, rdev) ? -errno : 0;
    if (!rc) set_owner(rel(path));
    return rtt_end(rc);
}
static int lfs_mkdir(const char *path, mode_t mode) {
    rtt_begin();
    int rc = mkdirat(src_fd, rel(path), mode) ? -errno : 0;
    if (!rc) set_owner(rel(path));
    return rtt_end(rc);
}
static int lfs_symlink(const char *target, const char *path) {
    rtt_begin();
    int rc = symlinkat(target, src_fd, rel(path)) ? -errno : 0;
    if (!rc) set_owner(rel(path));
    return rtt_end(rc);
}
static int lfs_unlink(const char *path) { RTT(unlinkat(src_fd, rel(path), 0)); }
static int lfs_rmdir(const char *path) { RTT(unlinkat(src_fd, rel(path), AT_REMOVEDIR)); }
static int lfs_rename(const char *from, const char *to, unsigned int flags) {
    if (flags) return -EINVAL;
    RTT(renameat(src_fd, rel(from), src_fd, rel(to)));
}
static int lfs_link(const char *from, const char *to) { RTT(linkat(src_fd, rel(from), src_fd, rel(to), 0)); }
static int lfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
    rtt_begin();
    int rc = fi ? fchmod((int)fi->fh, mode) : fchmodat(src_fd, rel(path), mode, 0);
    return rtt_end(rc ? -errno : 0);
}
static int lfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
    rtt_begin();
    int rc = fi ? fchown((int)fi->fh, uid, gid) : fchownat(src_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);
    return rtt_end(rc ? -errno : 0);
}
static int lfs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    rtt_begin();
    int rc;
    if (fi) rc = ftruncate((int)fi->fh, size);
    else {
        int fd = openat(src_fd, rel(path), O_WRONLY | O_CLOEXEC);
        rc = fd < 0 ? -1 : ftruncate(fd, size);
        if (fd >= 0) { int e = errno; close(fd); errno = e; }
    }
    return rtt_end(rc ? -errno : 0);
}
static int lfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
    rtt_begin();
    int rc = fi ? futimens((int)fi->fh, tv) : utimensat(src_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW);
    return rtt_end(rc ? -errno : 0);
}

static int lfs_open(const char *path, struct fuse_file_info *fi) {
    rtt_begin();
    int fd = openat(src_fd, rel(path), (fi->flags & ~O_CREAT) | O_CLOEXEC);
    if (fd < 0) return rtt_end(-errno);
    fi->fh = fd;
    return rtt_end(0);
}
static int lfs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
    rtt_begin();
    int fd = openat(src_fd, rel(path), fi->flags | O_CREAT | O_CLOEXEC, mode);
    if (fd < 0) return rtt_end(-errno);
    struct fuse_context *c = fuse_get_context();
    fchown(fd, c->uid, c->gid);
    fi->fh = fd;
    return rtt_end(0);
}
static int lfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    rtt_begin();
    ssize_t n = pread((int)fi->fh, buf, size, off);
    return rtt_end(n < 0 ? -errno : (int)n);
}
static int lfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    rtt_begin();
    ssize_t n = pwrite((int)fi->fh, buf, size, off);
    return rtt_end(n < 0 ? -errno : (int)n);
}
static int lfs_statfs(const char *path, struct statvfs *s) {
    (void)path;
    RTT(fstatvfs(src_fd, s));
}
static int lfs_flush(const char *path, struct fuse_file_info *fi) { (void)path; (void)fi; return 0; }
static int lfs_release(const char *path, struct fuse_file_info *fi) { (void)path; close((int)fi->fh); return 0; }
static int lfs_fsync(const char *path, int datasync, struct fuse_file_info *fi) { (void)path; (void)datasync; (void)fi; return 0; }

static off_t lfs_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi) {
    (void)path;
    rtt_begin();
    off_t r = lseek((int)fi->fh, off, whence);
    int e = errno;
    rtt_end(0);
    return r < 0 ? -e : r;
}

struct dirh { DIR *dp; struct dirent *entry; off_t offset; };

static int lfs_opendir(const char *path, struct fuse_file_info *fi) {
    rtt_begin();
    int fd = openat(src_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return rtt_end(-errno);
    struct dirh *d = calloc(1, sizeof *d);
    d->dp = fdopendir(fd);
    if (!d->dp) { int e = errno; close(fd); free(d); return rtt_end(-e); }
    fi->fh = (uintptr_t)d;
    return rtt_end(0);
}
/* transcribed from libfuse's example/passthrough_fh.c */
static int lfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
                       struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)path; (void)flags;
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    rtt_begin();
    if (offset != d->offset) {
        seekdir(d->dp, offset);
        d->entry = NULL;
        d->offset = offset;
    }
    for (;;) {
        if (!d->entry) {
            errno = 0;
            d->entry = readdir(d->dp);
            if (!d->entry) { if (errno) return rtt_end(-errno); break; }
        }
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = d->entry->d_ino;
        st.st_mode = d->entry->d_type << 12;
        off_t nextoff = telldir(d->dp);
        if (filler(buf, d->entry->d_name, &st, nextoff, 0)) break;
        d->entry = NULL;
        d->offset = nextoff;
    }
    return rtt_end(0);
}
static int lfs_releasedir(const char *path, struct fuse_file_info *fi) {
    (void)path;
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    closedir(d->dp);
    free(d);
    return 0;
}

static const struct fuse_operations ops_table = {
    .init = lfs_init,
    .getattr = lfs_getattr,
    .readlink = lfs_readlink,
    .mknod = lfs_mknod,
    .mkdir = lfs_mkdir,
    .symlink = lfs_symlink,
    .unlink = lfs_unlink,
    .rmdir = lfs_rmdir,
    .rename = lfs_rename,
    .link = lfs_link,
    .chmod = lfs_chmod,
    .chown = lfs_chown,
    .truncate = lfs_truncate,
    .utimens = lfs_utimens,
    .open = lfs_open,
    .create = lfs_create,
    .read = lfs_read,
    .write = lfs_write,
    .statfs = lfs_statfs,
    .flush = lfs_flush,
    .release = lfs_release,
    .fsync = lfs_fsync,
    .lseek = lfs_lseek,
    .opendir = lfs_opendir,
    .readdir = lfs_readdir,
    .releasedir = lfs_releasedir,
};

/* A fixed pool of server threads, all started before the mount is used, like
 * the nfsd threads of a real server.  libfuse's own multithreaded loop starts
 * threads one at a time as requests arrive, so a freshly mounted filesystem
 * (the benchmark remounts before every run) would spend the first part of
 * every run growing its pool. */
static void *serve_thread(void *arg) {
    struct fuse_session *se = arg;
    struct fuse_buf fbuf = { .mem = NULL };
    while (!fuse_session_exited(se)) {
        int res = fuse_session_receive_buf(se, &fbuf);
        if (res == -EINTR) continue;
        if (res <= 0) { if (res < 0) fuse_session_exit(se); break; }
        fuse_session_process_buf(se, &fbuf);
    }
    free(fbuf.mem);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s SOURCE MOUNTPOINT DELAY_US STATS_JSON [THREADS]\n", argv[0]);
        return 2;
    }
    src_fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (src_fd < 0) { perror(argv[1]); return 1; }
    delay_us = atol(argv[3]);
    stats_path = argv[4][0] ? argv[4] : NULL;
    int threads = argc > 5 ? atoi(argv[5]) : 256;
    if (threads < 1) threads = 1;
    clock_gettime(CLOCK_MONOTONIC, &started);
    signal(SIGUSR1, on_usr1);
    if (getenv("LATENCYFS_TRACE")) { trace_cap = 1 << 22; trace = calloc(trace_cap, sizeof *trace); trace_op = calloc(trace_cap, sizeof *trace_op); }
    umask(0);
    char opts[256];
    snprintf(opts, sizeof opts, "fsname=latencyfs,subtype=latencyfs%s", geteuid() == 0 ? ",allow_other" : "");
    char *fargv[] = { argv[0], "-o", opts, NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse *f = fuse_new(&args, &ops_table, sizeof ops_table, NULL);
    if (!f) return 1;
    if (fuse_mount(f, argv[2])) { fuse_destroy(f); return 1; }
    struct fuse_session *se = fuse_get_session(f);
    fuse_set_signal_handlers(se);
    pthread_t *tids = calloc(threads, sizeof *tids);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int started_n = 0;
    for (; started_n < threads; started_n++)
        if (pthread_create(&tids[started_n], &attr, serve_thread, se)) break;
    for (int i = 0; i < started_n; i++) pthread_join(tids[i], NULL);
    fuse_remove_signal_handlers(se);
    fuse_unmount(f);
    fuse_destroy(f);
    dump_stats();
    if (trace && getenv("LATENCYFS_TRACE")) {
        FILE *tf = fopen(getenv("LATENCYFS_TRACE"), "w");
        for (long i = 0; tf && i < ops && i < trace_cap; i++) fprintf(tf, "%ld %s\n", trace[i], trace_op[i]);
        if (tf) fclose(tf);
    }
    return 0;
}
