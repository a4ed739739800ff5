/*
 * limitwalk: the most parallel client this project could write for a tree on a
 * slow filesystem, the "limit" that benchmarks/ptools_bench.py measures each
 * p-command against (in the same run, on the same server).
 *
 *   limitwalk OP ROOT [DEST] [THREADS]
 *
 * OP is one of
 *   walk   read every directory (find)
 *   stat   read every directory and fstatat every entry (du -s, ls -lR,
 *          find -size)
 *   chmod  fstatat and fchmodat g+w every entry and ROOT (chmod -R g+w)
 *   rm     unlink every file, then rmdir every directory bottom-up (rm -r)
 *   cp     copy ROOT to DEST (cp -r: mkdir, open, read, write, close)
 *
 * How it is as parallel as it can be: every directory AND every single file
 * operation is a job of its own in one queue served by THREADS threads (default
 * 512, more than the simulated server serves at once), so as many requests are
 * in flight as there is work known; every operation is relative to its
 * directory's open fd (openat, fstatat, …), so no path is looked up twice; a
 * directory's fd stays open until its last child is done. No output, no sorting,
 * no error messages beyond a count: nothing a real command must also do.
 *
 * Not part of the product: a benchmark's yardstick. Built by ptools_bench.py
 * with gcc -O2 -pthread.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

enum op { WALK, STAT, CHMOD, RM, CP };
static enum op op;

struct dir {
    int fd;           /* this directory (source side) */
    int dfd;          /* cp: its copy */
    struct dir *parent;
    char *name;       /* in parent */
    long pending;     /* 1 for its own read + one per child job not done */
    struct job *jobs; /* its entries not yet taken by a thread */
    int queued;       /* in the ring */
    struct dir *ring_next;
};

struct job {
    struct dir *parent; /* the directory holding the entry */
    char *name;
    int is_dir;         /* known a directory (d_type), or -1: unknown */
    struct job *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
/* directories with entries to do, taken in turn: a server may serialize the
 * lookups within one directory (libfuse's high-level API does), so threads
 * spread over every directory that has work rather than crowd the newest */
static struct dir *ring_head, *ring_tail;
static long outstanding; /* jobs queued or running */
static long errors;
static struct dir *top;
static const char *top_copy; /* cp: the name of ROOT's copy in DEST's folder */

static void push(struct dir *parent, const char *name, int is_dir) {
    struct job *j = malloc(sizeof *j);
    j->parent = parent;
    j->name = strdup(name);
    j->is_dir = is_dir;
    pthread_mutex_lock(&mu);
    j->next = parent->jobs;
    parent->jobs = j;
    if (!parent->queued) {
        parent->queued = 1;
        parent->ring_next = NULL;
        if (ring_tail) ring_tail->ring_next = parent; else ring_head = parent;
        ring_tail = parent;
    }
    outstanding++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static int first_errno; /* what the first failure was, for the message */
static const char *first_what;

#define fail() fail_(__func__)
static void fail_(const char *what) {
    if (__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED) == 1) {
        first_errno = errno;
        first_what = what;
    }
}

/* a child of d is done; the last one closes d (rm: removes it) and tells its parent */
static void done(struct dir *d) {
    while (d && __atomic_sub_fetch(&d->pending, 1, __ATOMIC_ACQ_REL) == 0) {
        struct dir *p = d->parent;
        close(d->fd);
        if (op == CP) close(d->dfd);
        if (op == RM && p && unlinkat(p->fd, d->name, AT_REMOVEDIR) != 0) fail();
        free(d->name);
        free(d);
        d = p;
    }
}

static void copy_file(struct dir *p, const char *name) {
    int in = openat(p->fd, name, O_RDONLY | O_CLOEXEC);
    if (in < 0) { fail(); return; }
    int out = openat(p->dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) { fail(); close(in); return; }
    char buf[131072];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n) { fail(); break; }
    if (n < 0) fail();
    close(in);
    close(out);
}

static void read_dir(struct dir *parent, const char *name, int fd) {
    struct dir *d = calloc(1, sizeof *d);
    d->fd = fd;
    d->parent = parent;
    d->name = strdup(name);
    d->pending = 1;
    if (op == CP) {
        const char *to = parent == top ? top_copy : name;
        if (mkdirat(parent->dfd, to, 0755) != 0 && errno != EEXIST) fail();
        d->dfd = openat(parent->dfd, to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->dfd < 0) fail();
    }
    int rfd = dup(fd);
    DIR *dir = fdopendir(rfd);
    if (!dir) { fail(); close(rfd); done(d); return; }
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int is_dir = e->d_type == DT_DIR ? 1 : e->d_type == DT_UNKNOWN ? -1 : 0;
        if (op == WALK && !is_dir) continue; /* find: nothing more to ask of a file */
        __atomic_add_fetch(&d->pending, 1, __ATOMIC_ACQ_REL);
        push(d, e->d_name, is_dir);
    }
    closedir(dir);
    done(d);
}

static void run(struct job *j) {
    struct dir *p = j->parent;
    struct stat st;
    int is_dir = j->is_dir;
    if (op == STAT || op == CHMOD || is_dir < 0) {
        if (fstatat(p->fd, j->name, &st, AT_SYMLINK_NOFOLLOW) != 0) { fail(); done(p); return; }
        is_dir = S_ISDIR(st.st_mode);
    }
    if (op == CHMOD && fchmodat(p->fd, j->name, st.st_mode | S_IWGRP, 0) != 0) fail();
    if (is_dir) {
        int fd = openat(p->fd, j->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            read_dir(p, j->name, fd); /* its own completion tells p */
            return;
        }
        fail();
    } else if (op == RM) {
        if (unlinkat(p->fd, j->name, 0) != 0) fail();
    } else if (op == CP) {
        copy_file(p, j->name);
    }
    done(p);
}

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!ring_head && outstanding > 0) pthread_cond_wait(&cv, &mu);
        if (!ring_head) { pthread_mutex_unlock(&mu); return NULL; }
        struct dir *d = ring_head;
        ring_head = d->ring_next;
        if (!ring_head) ring_tail = NULL;
        struct job *j = d->jobs;
        d->jobs = j->next;
        if (d->jobs) { /* back of the ring */
            d->ring_next = NULL;
            if (ring_tail) ring_tail->ring_next = d; else ring_head = d;
            ring_tail = d;
        } else {
            d->queued = 0;
        }
        pthread_mutex_unlock(&mu);
        run(j);
        free(j->name);
        free(j);
        pthread_mutex_lock(&mu);
        if (--outstanding == 0) pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: limitwalk walk|stat|chmod|rm|cp ROOT [DEST] [THREADS]\n");
        return 2;
    }
    const char *ops[] = {"walk", "stat", "chmod", "rm", "cp"};
    int found = 0;
    for (int i = 0; i < 5; i++) if (!strcmp(argv[1], ops[i])) { op = i; found = 1; }
    if (!found || (op == CP && argc < 4)) { fprintf(stderr, "limitwalk: bad arguments\n"); return 2; }
    int targ = op == CP ? 4 : 3;
    int threads = argc > targ ? atoi(argv[targ]) : 512;
    if (threads < 1) threads = 1;
    /* every directory not yet done keeps its fd(s) open, and every copy in
     * flight two more: take all the descriptors the hard limit allows */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* the root's parent, so the root is an entry like any other */
    char *root = strdup(argv[2]), *slash = strrchr(root, '/');
    const char *pdir = ".", *base = root;
    if (slash) { *slash = 0; pdir = *root ? root : "/"; base = slash + 1; }
    top = calloc(1, sizeof *top);
    top->fd = open(pdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    top->pending = 1;
    top->name = strdup("");
    if (op == CP) {
        char *dst = strdup(argv[3]), *ds = strrchr(dst, '/');
        const char *dpdir = ".";
        if (ds) { *ds = 0; dpdir = *dst ? dst : "/"; }
        top->dfd = open(dpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        top_copy = ds ? ds + 1 : dst; /* DEST (new): ROOT's copy */
        if (top->dfd < 0) { perror(dpdir); return 1; }
    }
    if (top->fd < 0) { perror(pdir); return 1; }
    __atomic_add_fetch(&top->pending, 1, __ATOMIC_ACQ_REL);
    push(top, base, 1);
    pthread_t *t = calloc(threads, sizeof *t);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int n = 0;
    for (; n < threads; n++) if (pthread_create(&t[n], &attr, worker, NULL)) break;
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    if (errors)
        fprintf(stderr, "limitwalk: %ld operations failed, the first in %s: %s\n", errors, first_what,
                strerror(first_errno));
    return errors ? 1 : 0;
}
