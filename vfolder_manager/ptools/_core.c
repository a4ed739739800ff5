/*
 * Native core of the parallel file toolkit.
 *
 * Why C: a tree walk is a long series of tiny syscalls (getdents, fstatat,
 * chmod, unlink...).  On a NAS each one is a network round trip, so many must
 * be in flight at once; on a local disk with a warm cache each costs about a
 * microsecond, so any per-entry interpreter work (and the GIL) makes Python
 * slower than GNU find/du.  This module runs the whole walk in pthreads,
 * without the GIL, and hands the Python side compact batches of results.
 *
 * Model: a shared LIFO of tasks (list a directory, or process a chunk of a
 * large directory's entries).  Every directory node counts its outstanding
 * work (own listing + chunks + child directories); when it drops to zero the
 * node is "complete", which gives post-order hooks (du totals, rmdir, final
 * mode/times of copied directories) without a second pass.  Symlinks are never
 * followed below the roots (lstat semantics, O_NOFOLLOW opens), so loops and
 * links pointing outside the tree are harmless.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <grp.h>
#include <pwd.h>
#include <sys/sysmacros.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { M_FIND, M_DU, M_CHMOD, M_CHOWN, M_RM, M_CP };
enum { OUT_NONE, OUT_PATHS, OUT_RECORDS };
enum { T_ROOT, T_LIST, T_CHUNK };
/* operation codes reported with errors; the Python side words the message */
enum { OP_STAT, OP_OPENDIR, OP_READDIR, OP_CHMOD, OP_CHOWN, OP_UNLINK,
       OP_RMDIR, OP_MKDIR, OP_OPEN, OP_COPY, OP_SYMLINK, OP_UTIME, OP_MKNOD,
       OP_CREATE, OP_SURPRISE };

#define ATOMIC_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)
#define ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

#define FLUSH_BYTES (64 * 1024)
#define DIRBUF (64 * 1024)

/* ---------------------------------------------------------------- buffers */

typedef struct { char *p; size_t len, cap; } buf_t;

static int buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return -1;
    b->p = np; b->cap = cap;
    return 0;
}
static int buf_add(buf_t *b, const void *s, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, s, n); b->len += n;
    return 0;
}

/* one result row; the path lives in the batch's arena */
typedef struct {
    size_t off, plen;
    int kind;          /* 0 = entry, 1 = error */
    int depth, root, err, op;
    char type;
    int has_stat;
    struct stat st;
    uint64_t v1, v2, v3;  /* du: bytes, blocks, files */
} rec_t;

typedef struct batch {
    struct batch *next;
    buf_t data;        /* OUT_PATHS: separator-terminated paths; else arena */
    rec_t *recs; size_t nrec, reccap;
} batch_t;

static rec_t *batch_rec(batch_t *b) {
    if (b->nrec == b->reccap) {
        size_t cap = b->reccap ? b->reccap * 2 : 256;
        rec_t *n = realloc(b->recs, cap * sizeof(rec_t));
        if (!n) return NULL;
        b->recs = n; b->reccap = cap;
    }
    rec_t *r = &b->recs[b->nrec++];
    memset(r, 0, sizeof(*r));
    return r;
}
static void batch_free(batch_t *b) {
    if (!b) return;
    free(b->data.p); free(b->recs); free(b);
}

/* ---------------------------------------------------------------- inode set */
/* Hard links are counted once (du) — a sharded open-addressing set of
 * (dev, ino); sharding keeps lock contention low with many threads. */
#define NSHARD 64
typedef struct { pthread_mutex_t mu; uint64_t *keys; size_t cap, n; } shard_t;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33; return x;
}
/* returns 1 if newly inserted, 0 if present, -1 on OOM */
static int set_insert(shard_t *shards, uint64_t dev, uint64_t ino) {
    uint64_t h = mix(ino * 31 + dev);
    shard_t *s = &shards[h % NSHARD];
    pthread_mutex_lock(&s->mu);
    if ((s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 1024;
        uint64_t *nk = calloc(ncap * 2, sizeof(uint64_t));
        if (!nk) { pthread_mutex_unlock(&s->mu); return -1; }
        for (size_t i = 0; i < s->cap; i++) {
            uint64_t kd = s->keys[2 * i], ki = s->keys[2 * i + 1];
            if (!kd && !ki) continue;
            size_t j = mix(ki * 31 + kd) / NSHARD & (ncap - 1);
            while (nk[2 * j] || nk[2 * j + 1]) j = (j + 1) & (ncap - 1);
            nk[2 * j] = kd; nk[2 * j + 1] = ki;
        }
        free(s->keys); s->keys = nk; s->cap = ncap;
    }
    /* (0,0) marks an empty slot; no real file has dev 0 and ino 0 */
    size_t j = h / NSHARD & (s->cap - 1);
    int res = 1;
    while (s->keys[2 * j] || s->keys[2 * j + 1]) {
        if (s->keys[2 * j] == dev && s->keys[2 * j + 1] == ino) { res = 0; break; }
        j = (j + 1) & (s->cap - 1);
    }
    if (res) { s->keys[2 * j] = dev; s->keys[2 * j + 1] = ino; s->n++; }
    pthread_mutex_unlock(&s->mu);
    return res;
}

/* ---------------------------------------------------------------- params */

typedef struct { int op, flag; mode_t affected, value, mentioned; } modechg_t;
enum { MC_ORDINARY, MC_X_IF_ANY_X, MC_COPY };

typedef struct {
    int mode, out; char sep;
    int threads, max_inflight, chunk;
    int need_stat, follow_roots, cmdline_chmod_follow;
    int maxdepth, mindepth;
    unsigned typemask;          /* bit per type code, 0 = any */
    char *name_pat; int name_flags;
    int size_op; int64_t size_n, size_unit;
    int mtime_op; int64_t mtime_n; double now;
    int newer; int64_t newer_ns;
    int user; uid_t uid;
    modechg_t *chg; int nchg; mode_t umask;
    uid_t c_uid; gid_t c_gid;
    int du_all, du_maxdepth, diagnose;
    int verbose;
    int preserve;
} params_t;

/* ---------------------------------------------------------------- tree */

typedef struct node {
    struct node *parent;
    char *path; size_t plen;
    const char *name;           /* basename inside path, for openat */
    char *dpath; size_t dplen;  /* cp destination */
    int depth, root;
    long pending;               /* listing + chunks + incomplete child dirs */
    long refs;                  /* users of dfd/ddfd: listing, chunks, unopened children */
    int dfd, ddfd;
    int failed;
    uint64_t bytes, blocks, files;
    struct stat st;
} node_t;

typedef struct task {
    int kind;
    node_t *dir;
    buf_t names;                /* chunk: (dtype byte, name, NUL)* */
    int count;
    int root_index;
} task_t;

typedef struct {
    PyObject_HEAD
    params_t P;
    char **roots, **dests; int nroots;
    pthread_t *tids; int nthreads;
    pthread_mutex_t mu; pthread_cond_t cv;
    task_t **stack; size_t sn, scap;
    long outstanding;
    int abort, started, joined, live_workers;
    sem_t inflight; int throttle;
    pthread_mutex_t omu; pthread_cond_t ocv;
    batch_t *ohead, *otail;
    int consumer_waiting;
    shard_t shards[NSHARD];
    long long visited;
    int oom;
} walk_t;

/* per-thread scratch */
typedef struct {
    walk_t *w;
    batch_t *b;
    buf_t path;   /* path builder */
    buf_t dpath;  /* destination path builder */
    char *copybuf;
    char *dirbuf;  /* getdents64 buffer */
    /* sums of the entries visited in the current listing or chunk, added to
     * the shared counters once per task, not once per entry (atomics on a
     * cache line that several threads share cost more than the stat) */
    long long visited;
    uint64_t du_bytes, du_blocks, du_files;
} worker_t;

static void flush_sums(worker_t *k, node_t *d) {
    if (k->visited) { __atomic_add_fetch(&k->w->visited, k->visited, __ATOMIC_RELAXED); k->visited = 0; }
    if (k->du_files) {
        ATOMIC_ADD(&d->bytes, k->du_bytes); ATOMIC_ADD(&d->blocks, k->du_blocks); ATOMIC_ADD(&d->files, k->du_files);
        k->du_bytes = k->du_blocks = k->du_files = 0;
    }
}

static inline void io_begin(walk_t *w) { if (w->throttle) while (sem_wait(&w->inflight) && errno == EINTR); }
static inline void io_end(walk_t *w) { if (w->throttle) sem_post(&w->inflight); }

static void push_task(walk_t *w, task_t *t) {
    pthread_mutex_lock(&w->mu);
    if (w->sn == w->scap) {
        size_t cap = w->scap ? w->scap * 2 : 1024;
        task_t **ns = realloc(w->stack, cap * sizeof(*ns));
        if (!ns) { w->oom = 1; pthread_mutex_unlock(&w->mu); free(t); return; }
        w->stack = ns; w->scap = cap;
    }
    w->stack[w->sn++] = t;
    w->outstanding++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* ---------------------------------------------------------------- output */

static batch_t *cur_batch(worker_t *k) {
    if (!k->b) k->b = calloc(1, sizeof(batch_t));
    return k->b;
}
static void flush(worker_t *k, int force) {
    walk_t *w = k->w;
    batch_t *b = k->b;
    if (!b || (!b->nrec && !b->data.len)) return;
    if (!force && b->data.len < FLUSH_BYTES && b->nrec < 4096 && !ATOMIC_LOAD(&w->consumer_waiting)) return;
    k->b = NULL;
    pthread_mutex_lock(&w->omu);
    if (w->otail) w->otail->next = b; else w->ohead = b;
    w->otail = b;
    pthread_cond_signal(&w->ocv);
    pthread_mutex_unlock(&w->omu);
}

static mode_t mode_adjust(mode_t oldmode, int dir, const params_t *P, mode_t umask_value);

static void report_error_x(worker_t *k, const char *path, size_t plen, int err, int op, int root, int extra) {
    batch_t *b = cur_batch(k);
    if (!b) { k->w->oom = 1; return; }
    size_t off;
    if (k->w->P.out == OUT_RECORDS) { off = b->data.len; buf_add(&b->data, path, plen); }
    else {
        /* in paths mode the data buffer holds output; keep error paths after a
         * private arena: reuse recs with a malloc'ed copy in off */
        char *cp = malloc(plen + 1);
        if (!cp) { k->w->oom = 1; return; }
        memcpy(cp, path, plen);
        off = (size_t)cp;
    }
    rec_t *r = batch_rec(b);
    if (!r) { k->w->oom = 1; return; }
    r->off = off; r->plen = plen; r->kind = 1; r->err = err; r->op = op; r->root = root; r->depth = extra;
}
static void report_error(worker_t *k, const char *path, size_t plen, int err, int op, int root) {
    report_error_x(k, path, plen, err, op, root, 0);
}

/* chmod -w style modes: GNU warns when the umask kept bits the user asked to change */
static void chmod_surprise(worker_t *k, const char *path, size_t plen, mode_t old, mode_t nm, int dir, int root) {
    if (!k->w->P.diagnose) return;
    mode_t naive = mode_adjust(old, dir, &k->w->P, 0);
    if (nm & ~naive & 07777) report_error_x(k, path, plen, (int)(nm & 07777), OP_SURPRISE, root, (int)(naive & 07777));
}

static void emit(worker_t *k, const char *path, size_t plen, int depth, int root,
                 char type, const struct stat *st, uint64_t v1, uint64_t v2, uint64_t v3) {
    walk_t *w = k->w;
    if (w->P.out == OUT_NONE) return;
    batch_t *b = cur_batch(k);
    if (!b) { w->oom = 1; return; }
    if (w->P.out == OUT_PATHS) {
        if (buf_reserve(&b->data, plen + 1)) { w->oom = 1; return; }
        memcpy(b->data.p + b->data.len, path, plen);
        b->data.p[b->data.len + plen] = w->P.sep;
        b->data.len += plen + 1;
        return;
    }
    size_t off = b->data.len;
    if (buf_add(&b->data, path, plen)) { w->oom = 1; return; }
    rec_t *r = batch_rec(b);
    if (!r) { w->oom = 1; return; }
    r->off = off; r->plen = plen; r->depth = depth; r->root = root; r->type = type;
    if (st) { r->has_stat = 1; r->st = *st; }
    r->v1 = v1; r->v2 = v2; r->v3 = v3;
}

/* ---------------------------------------------------------------- helpers */

static char type_of_mode(mode_t m) {
    if (S_ISREG(m)) return 'f';
    if (S_ISDIR(m)) return 'd';
    if (S_ISLNK(m)) return 'l';
    if (S_ISFIFO(m)) return 'p';
    if (S_ISSOCK(m)) return 's';
    if (S_ISCHR(m)) return 'c';
    if (S_ISBLK(m)) return 'b';
    return '?';
}
static char type_of_dtype(unsigned char d) {
    switch (d) {
    case DT_REG: return 'f'; case DT_DIR: return 'd'; case DT_LNK: return 'l';
    case DT_FIFO: return 'p'; case DT_SOCK: return 's'; case DT_CHR: return 'c';
    case DT_BLK: return 'b'; default: return 0;
    }
}
static unsigned type_bit(char t) {
    const char *all = "fdlpscb";
    const char *p = t ? strchr(all, t) : NULL;
    return p ? 1u << (p - all) : 0;
}

static mode_t mode_adjust(mode_t oldmode, int dir, const params_t *P, mode_t umask_value) {
    /* a transcription of gnulib's modechange.c mode_adjust(), so that symbolic
     * and numeric modes give exactly GNU chmod's results */
    const mode_t ALLM = S_ISUID | S_ISGID | S_ISVTX | S_IRWXU | S_IRWXG | S_IRWXO;
    mode_t newmode = oldmode & ALLM;
    for (int i = 0; i < P->nchg; i++) {
        const modechg_t *c = &P->chg[i];
        mode_t affected = c->affected;
        mode_t omit = (dir ? S_ISUID | S_ISGID : 0) & ~c->mentioned;
        mode_t value = c->value;
        if (c->flag == MC_COPY) {
            value &= newmode;
            value |= ((value & (S_IRUSR | S_IRGRP | S_IROTH) ? S_IRUSR | S_IRGRP | S_IROTH : 0)
                      | (value & (S_IWUSR | S_IWGRP | S_IWOTH) ? S_IWUSR | S_IWGRP | S_IWOTH : 0)
                      | (value & (S_IXUSR | S_IXGRP | S_IXOTH) ? S_IXUSR | S_IXGRP | S_IXOTH : 0));
        } else if (c->flag == MC_X_IF_ANY_X) {
            if ((newmode & (S_IXUSR | S_IXGRP | S_IXOTH)) || dir)
                value |= S_IXUSR | S_IXGRP | S_IXOTH;
        }
        value &= (affected ? affected : ~umask_value) & ~omit;
        if (c->op == '=') {
            mode_t preserved = (affected ? ~affected : 0) | omit;
            newmode = (newmode & preserved) | value;
        } else if (c->op == '+') newmode |= value;
        else if (c->op == '-') newmode &= ~value;
    }
    return newmode;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int find_match(const params_t *P, const char *name, char type, const struct stat *st) {
    if (P->typemask && !(P->typemask & type_bit(type))) return 0;
    if (P->name_pat && fnmatch(P->name_pat, name, P->name_flags) != 0) return 0;
    if (!st) return 1;
    if (P->size_op) {
        int64_t v = P->size_unit == 1 ? (int64_t)st->st_size : ceil_div(st->st_size, P->size_unit);
        if (P->size_op == '+' && !(v > P->size_n)) return 0;
        if (P->size_op == '-' && !(v < P->size_n)) return 0;
        if (P->size_op == '=' && !(v == P->size_n)) return 0;
    }
    if (P->mtime_op) {
        double age = P->now - ((double)st->st_mtim.tv_sec + st->st_mtim.tv_nsec / 1e9);
        double lo = (double)P->mtime_n * 86400.0, hi = lo + 86400.0;
        if (P->mtime_op == '+' && !(age > hi)) return 0;
        if (P->mtime_op == '-' && !(age < lo)) return 0;
        if (P->mtime_op == '=' && !(age >= lo && age < hi)) return 0;
    }
    if (P->newer) {
        int64_t ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
        if (!(ns > P->newer_ns)) return 0;
    }
    if (P->user && st->st_uid != P->uid) return 0;
    return 1;
}

/* build "<dir>/<name>" in k->path; returns length */
static size_t join(buf_t *b, const char *dir, size_t dlen, const char *name) {
    size_t nlen = strlen(name);
    b->len = 0;
    if (buf_reserve(b, dlen + nlen + 2)) return 0;
    memcpy(b->p, dir, dlen);
    size_t n = dlen;
    if (!(n > 0 && b->p[n - 1] == '/')) b->p[n++] = '/';
    memcpy(b->p + n, name, nlen);
    n += nlen;
    b->p[n] = 0;
    b->len = n;
    return n;
}

static node_t *new_node(node_t *parent, const char *path, size_t plen, const char *dpath, size_t dplen,
                        int depth, int root, const struct stat *st) {
    node_t *n = calloc(1, sizeof(node_t));
    if (!n) return NULL;
    n->path = malloc(plen + 1);
    if (!n->path) { free(n); return NULL; }
    memcpy(n->path, path, plen); n->path[plen] = 0; n->plen = plen;
    const char *slash = strrchr(n->path, '/');
    n->name = slash && slash[1] ? slash + 1 : n->path;
    if (dpath) {
        n->dpath = malloc(dplen + 1);
        if (!n->dpath) { free(n->path); free(n); return NULL; }
        memcpy(n->dpath, dpath, dplen); n->dpath[dplen] = 0; n->dplen = dplen;
    }
    n->parent = parent; n->depth = depth; n->root = root;
    n->pending = 1; n->refs = 1; n->dfd = -1; n->ddfd = -1;
    if (st) n->st = *st;
    return n;
}

static void release_fds(node_t *n) {
    if (ATOMIC_ADD(&n->refs, -1) == 0) {
        if (n->dfd >= 0) close(n->dfd);
        if (n->ddfd >= 0) close(n->ddfd);
        n->dfd = n->ddfd = -1;
    }
}

static void copy_attrs(worker_t *k, int fd, const char *dpath, size_t dplen, const struct stat *st, int is_dir, int root);

/* post-order hook; then propagates completion upwards */
static void complete(worker_t *k, node_t *n) {
    walk_t *w = k->w;
    while (n) {
        if (ATOMIC_ADD(&n->pending, -1) != 0) return;
        node_t *parent = n->parent;
        switch (w->P.mode) {
        case M_DU: {
            uint64_t bytes = n->bytes + n->st.st_size;
            uint64_t blocks = n->blocks + n->st.st_blocks;
            uint64_t files = n->files;
            if (w->P.du_maxdepth < 0 || n->depth <= w->P.du_maxdepth)
                emit(k, n->path, n->plen, n->depth, n->root, 'd', &n->st, bytes, blocks, files);
            if (parent) {
                ATOMIC_ADD(&parent->bytes, bytes);
                ATOMIC_ADD(&parent->blocks, blocks);
                ATOMIC_ADD(&parent->files, files + 1);
            }
            break;
        }
        case M_RM:
            if (n->failed) {
                if (parent) ATOMIC_STORE(&parent->failed, 1);
                break;
            }
            io_begin(w);
            int rc = rmdir(n->path);
            io_end(w);
            if (rc) {
                report_error(k, n->path, n->plen, errno, OP_RMDIR, n->root);
                if (parent) ATOMIC_STORE(&parent->failed, 1);
            } else if (w->P.verbose) emit(k, n->path, n->plen, n->depth, n->root, 'd', NULL, 0, 0, 0);
            break;
        case M_CP:
            if (n->dpath) copy_attrs(k, -1, n->dpath, n->dplen, &n->st, 1, n->root);
            break;
        }
        free(n->path); free(n->dpath); free(n);
        n = parent;
    }
}

/* ---------------------------------------------------------------- copying */

static void copy_attrs(worker_t *k, int fd, const char *dpath, size_t dplen, const struct stat *st, int is_dir, int root) {
    walk_t *w = k->w;
    int rc;
    if (w->P.preserve) {
        struct timespec ts[2] = { st->st_atim, st->st_mtim };
        io_begin(w);
        rc = fd >= 0 ? fchown(fd, st->st_uid, st->st_gid) : lchown(dpath, st->st_uid, st->st_gid);
        io_end(w);
        if (rc && errno != EPERM) report_error(k, dpath, dplen, errno, OP_CHOWN, root);
        if (!S_ISLNK(st->st_mode)) {
            io_begin(w);
            rc = fd >= 0 ? fchmod(fd, st->st_mode & 07777) : chmod(dpath, st->st_mode & 07777);
            io_end(w);
            if (rc) report_error(k, dpath, dplen, errno, OP_CHMOD, root);
        }
        io_begin(w);
        rc = fd >= 0 ? futimens(fd, ts) : utimensat(AT_FDCWD, dpath, ts, AT_SYMLINK_NOFOLLOW);
        io_end(w);
        if (rc) report_error(k, dpath, dplen, errno, OP_UTIME, root);
    } else if (is_dir) {
        /* directories were created writable by us; settle the final mode the
         * way GNU cp does: source mode minus umask */
        mode_t want = st->st_mode & 07777 & ~w->P.umask;
        io_begin(w); rc = chmod(dpath, want); io_end(w);
        if (rc) report_error(k, dpath, dplen, errno, OP_CHMOD, root);
    }
}

static int copy_data(worker_t *k, int in, int out, off_t size, int sparse) {
    off_t pos = 0;
    int sparse_ok = sparse;   /* only look for holes in files that have some (GNU's heuristic) */
    if (size == 0) return 0;
    while (pos < size) {
        off_t data = size, hole = size;
        if (sparse_ok) {
            data = lseek(in, pos, SEEK_DATA);
            if (data < 0) {
                if (errno == ENXIO) break;      /* only a hole remains */
                sparse_ok = 0; data = pos;
            } else {
                hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0) hole = size;
            }
        } else data = pos;
        if (!sparse_ok) hole = size;
        off_t oin = data, oout = data;
        int use_cfr = 1;
        while (oin < hole) {
            ssize_t n = -1;
            if (use_cfr) {
                n = copy_file_range(in, &oin, out, &oout, (size_t)(hole - oin), 0);
                if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP || errno == EBADF)) {
                    use_cfr = 0; continue;
                }
                if (n < 0) return -1;
                if (n == 0) { hole = oin; break; }
            } else {
                if (!k->copybuf && !(k->copybuf = malloc(1 << 20))) return -1;
                size_t want = (size_t)(hole - oin) < (1 << 20) ? (size_t)(hole - oin) : (1 << 20);
                n = pread(in, k->copybuf, want, oin);
                if (n < 0) return -1;
                if (n == 0) { hole = oin; break; }
                ssize_t off = 0;
                while (off < n) {
                    ssize_t m = pwrite(out, k->copybuf + off, n - off, oout + off);
                    if (m < 0) return -1;
                    off += m;
                }
                oin += n; oout += n;
            }
        }
        pos = hole;
        if (pos == data) break;
    }
    /* a trailing hole needs the size set explicitly */
    return pos < size ? ftruncate(out, size) : 0;
}

/* copy one non-directory entry (src relative to dfd) to dst relative to ddfd */
static void copy_one(worker_t *k, int dfd, const char *name, const char *spath, size_t splen,
                     int ddfd, const char *dname, const char *dpath, size_t dplen, const struct stat *st, int root) {
    walk_t *w = k->w;
    int rc;
    if (S_ISREG(st->st_mode)) {
        /* a command-line source of a non-recursive copy is dereferenced, like cp */
        int nofollow = (dfd == AT_FDCWD && w->P.follow_roots) ? 0 : O_NOFOLLOW;
        io_begin(w); int in = openat(dfd, name, O_RDONLY | nofollow | O_CLOEXEC); io_end(w);
        if (in < 0) { report_error(k, spath, splen, errno, OP_OPEN, root); return; }
        mode_t m = st->st_mode & 0777;
        io_begin(w); int out = openat(ddfd, dname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, m); io_end(w);
        if (out < 0) { report_error(k, dpath, dplen, errno, OP_CREATE, root); close(in); return; }
        int sparse = (off_t)st->st_blocks * 512 < st->st_size;
        io_begin(w); rc = copy_data(k, in, out, st->st_size, sparse); io_end(w);
        if (rc) report_error(k, dpath, dplen, errno, OP_COPY, root);
        if (w->P.preserve) copy_attrs(k, out, dpath, dplen, st, 0, root);
        close(in); close(out);
        return;
    }
    if (S_ISLNK(st->st_mode)) {
        char tb[PATH_MAX + 1];
        io_begin(w); ssize_t n = readlinkat(dfd, name, tb, PATH_MAX); io_end(w);
        if (n < 0) { report_error(k, spath, splen, errno, OP_OPEN, root); return; }
        tb[n] = 0;
        io_begin(w); rc = symlinkat(tb, ddfd, dname); io_end(w);
        if (rc && errno == EEXIST) {
            io_begin(w); unlinkat(ddfd, dname, 0); rc = symlinkat(tb, ddfd, dname); io_end(w);
        }
        if (rc) { report_error(k, dpath, dplen, errno, OP_SYMLINK, root); return; }
        if (w->P.preserve) {
            struct timespec ts[2] = { st->st_atim, st->st_mtim };
            io_begin(w);
            fchownat(ddfd, dname, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
            utimensat(ddfd, dname, ts, AT_SYMLINK_NOFOLLOW);
            io_end(w);
        }
        return;
    }
    /* fifos, sockets, devices: recreate, as cp -R does */
    io_begin(w); rc = mknodat(ddfd, dname, st->st_mode & (S_IFMT | 0777), st->st_rdev); io_end(w);
    if (rc) { report_error(k, dpath, dplen, errno, OP_MKNOD, root); return; }
    if (w->P.preserve) {
        struct timespec ts[2] = { st->st_atim, st->st_mtim };
        io_begin(w);
        fchownat(ddfd, dname, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
        fchmodat(ddfd, dname, st->st_mode & 07777, 0);
        utimensat(ddfd, dname, ts, AT_SYMLINK_NOFOLLOW);
        io_end(w);
    }
}

/* ---------------------------------------------------------------- visiting */

static void enqueue_dir(walk_t *w, node_t *n) {
    task_t *t = calloc(1, sizeof(task_t));
    if (!t) { w->oom = 1; return; }
    t->kind = T_LIST; t->dir = n;
    push_task(w, t);
}

/* process one entry of directory d; name relative to d->dfd */
static void visit(worker_t *k, node_t *d, const char *name, unsigned char dtype) {
    walk_t *w = k->w;
    const params_t *P = &w->P;
    char type = type_of_dtype(dtype);
    struct stat st, *stp = NULL;
    int depth = d->depth + 1;
    size_t plen = 0;
    k->visited++;

    int want_stat = P->need_stat || !type;
    if (P->mode == M_FIND && P->maxdepth >= 0 && depth > P->maxdepth) return;
    if (P->mode == M_FIND && !P->need_stat && type && type != 'd') {
        /* cheap path: decide on name/type before paying for a stat */
        if (depth < P->mindepth) return;
        if (!find_match(P, name, type, NULL)) return;
    }
    if (P->mode == M_RM && type) want_stat = 0;
    if (want_stat) {
        io_begin(w);
        int rc = fstatat(d->dfd, name, &st, AT_SYMLINK_NOFOLLOW);
        io_end(w);
        if (rc) {
            plen = join(&k->path, d->path, d->plen, name);
            if (!(P->mode == M_RM && errno == ENOENT))
                report_error(k, k->path.p, plen, errno, OP_STAT, d->root);
            if (P->mode == M_RM) ATOMIC_STORE(&d->failed, 1);
            return;
        }
        stp = &st;
        type = type_of_mode(st.st_mode);
    }
    int is_dir = type == 'd';

    switch (P->mode) {
    case M_FIND:
        if (depth >= P->mindepth && find_match(P, name, type, stp)) {
            plen = join(&k->path, d->path, d->plen, name);
            emit(k, k->path.p, plen, depth, d->root, type, stp, 0, 0, 0);
        }
        break;
    case M_DU:
        if (!is_dir) {
            if (st.st_nlink > 1) {
                int r = set_insert(w->shards, st.st_dev, st.st_ino);
                if (r == 0) return;
            }
            k->du_bytes += (uint64_t)st.st_size;     /* added to d by flush_sums */
            k->du_blocks += (uint64_t)st.st_blocks;
            k->du_files++;
            if (P->du_all) {
                plen = join(&k->path, d->path, d->plen, name);
                emit(k, k->path.p, plen, depth, d->root, type, stp, st.st_size, st.st_blocks, 1);
            }
        }
        break;
    case M_CHMOD:
        if (type != 'l') {
            mode_t nm = mode_adjust(st.st_mode, is_dir, P, P->umask);
            int rc = 0;
            if ((nm & 07777) != (st.st_mode & 07777)) {
                io_begin(w); rc = fchmodat(d->dfd, name, nm, 0); io_end(w);
                if (rc) {
                    plen = join(&k->path, d->path, d->plen, name);
                    report_error(k, k->path.p, plen, errno, OP_CHMOD, d->root);
                }
            }
            if (!rc && P->diagnose) {
                plen = join(&k->path, d->path, d->plen, name);
                chmod_surprise(k, k->path.p, plen, st.st_mode, nm, is_dir, d->root);
            }
        }
        break;
    case M_CHOWN: {
        io_begin(w); int rc = fchownat(d->dfd, name, P->c_uid, P->c_gid, AT_SYMLINK_NOFOLLOW); io_end(w);
        if (rc) {
            plen = join(&k->path, d->path, d->plen, name);
            report_error(k, k->path.p, plen, errno, OP_CHOWN, d->root);
        }
        break;
    }
    case M_RM:
        if (!is_dir) {
            io_begin(w); int rc = unlinkat(d->dfd, name, 0); io_end(w);
            plen = join(&k->path, d->path, d->plen, name);
            if (rc) {
                if (errno != ENOENT) {
                    report_error(k, k->path.p, plen, errno, OP_UNLINK, d->root);
                    ATOMIC_STORE(&d->failed, 1);
                }
            } else if (P->verbose) emit(k, k->path.p, plen, depth, d->root, type, NULL, 0, 0, 0);
        }
        break;
    case M_CP: {
        size_t dplen = join(&k->dpath, d->dpath, d->dplen, name);
        plen = join(&k->path, d->path, d->plen, name);
        if (is_dir) {
            io_begin(w); int rc = mkdirat(d->ddfd, name, (st.st_mode & 07777) | S_IRWXU); io_end(w);
            if (rc && errno != EEXIST) {
                report_error(k, k->dpath.p, dplen, errno, OP_MKDIR, d->root);
                return;   /* do not descend */
            }
            node_t *c = new_node(d, k->path.p, plen, k->dpath.p, dplen, depth, d->root, stp);
            if (!c) { w->oom = 1; return; }
            ATOMIC_ADD(&d->pending, 1);
            ATOMIC_ADD(&d->refs, 1);
            enqueue_dir(w, c);
            return;
        }
        copy_one(k, d->dfd, name, k->path.p, plen, d->ddfd, name, k->dpath.p, dplen, &st, d->root);
        return;
    }
    }

    if (is_dir && (P->mode != M_FIND || P->maxdepth < 0 || depth < P->maxdepth)) {
        if (!plen) plen = join(&k->path, d->path, d->plen, name);
        node_t *c = new_node(d, k->path.p, plen, NULL, 0, depth, d->root, stp);
        if (!c) { w->oom = 1; return; }
        ATOMIC_ADD(&d->pending, 1);
        ATOMIC_ADD(&d->refs, 1);
        enqueue_dir(w, c);
    }
}

static void run_chunk(worker_t *k, task_t *t) {
    node_t *d = t->dir;
    const char *p = t->names.p, *end = t->names.p + t->names.len;
    while (p < end && !k->w->abort) {
        unsigned char dt = (unsigned char)*p++;
        visit(k, d, p, dt);
        p += strlen(p) + 1;
    }
    flush_sums(k, d);
    free(t->names.p);
    release_fds(d);
    complete(k, d);
}

static void run_list(worker_t *k, task_t *t) {
    walk_t *w = k->w;
    node_t *d = t->dir;
    node_t *parent = d->parent;
    int fd = -1;
    io_begin(w);
    if (parent && parent->dfd >= 0)
        fd = openat(parent->dfd, d->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && (!parent || errno == EMFILE || errno == ENFILE || parent->dfd < 0))
        fd = open(d->path, O_RDONLY | O_DIRECTORY | (parent || !w->P.follow_roots ? O_NOFOLLOW : 0) | O_CLOEXEC);
    io_end(w);
    if (parent) release_fds(parent);
    if (fd < 0) {
        report_error(k, d->path, d->plen, errno, OP_OPENDIR, d->root);
        ATOMIC_STORE(&d->failed, 1);
        release_fds(d);
        complete(k, d);
        return;
    }
    d->dfd = fd;
    if (w->P.mode == M_CP) {
        io_begin(w);
        d->ddfd = open(d->dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        io_end(w);
        if (d->ddfd < 0) {
            report_error(k, d->dpath, d->dplen, errno, OP_OPENDIR, d->root);
            release_fds(d);
            complete(k, d);
            return;
        }
    }
    /* getdents64 straight on the fd: fdopendir() would fstat it first, one
     * more round trip per directory on a NAS, and uses a 32 KiB buffer */
    if (!k->dirbuf && !(k->dirbuf = malloc(DIRBUF))) {
        w->oom = 1;
        release_fds(d);
        complete(k, d);
        return;
    }
    int chunk = w->P.chunk;
    task_t *ct = NULL;
    for (int done = 0; !done && !w->abort;) {
        io_begin(w);
        ssize_t got = getdents64(fd, k->dirbuf, DIRBUF);
        io_end(w);
        if (got <= 0) {
            if (got < 0) report_error(k, d->path, d->plen, errno, OP_READDIR, d->root);
            break;
        }
        for (ssize_t off = 0; off < got;) {
            struct dirent64 *de = (struct dirent64 *)(k->dirbuf + off);
            off += de->d_reclen;
            const char *nm = de->d_name;
            if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2]))) continue;
            if (chunk <= 0) { visit(k, d, nm, de->d_type); continue; }
            if (!ct) {
                ct = calloc(1, sizeof(task_t));
                if (!ct) { w->oom = 1; done = 1; break; }
                ct->kind = T_CHUNK; ct->dir = d;
            }
            char dt = (char)de->d_type;
            buf_add(&ct->names, &dt, 1);
            buf_add(&ct->names, nm, strlen(nm) + 1);
            if (++ct->count >= chunk) {
                ATOMIC_ADD(&d->pending, 1); ATOMIC_ADD(&d->refs, 1);
                push_task(w, ct);
                ct = NULL;
            }
        }
    }
    if (ct) {
        /* the tail of the listing is processed here, saving a queue trip */
        ATOMIC_ADD(&d->pending, 1); ATOMIC_ADD(&d->refs, 1);
        run_chunk(k, ct);
        free(ct);
    }
    flush_sums(k, d);
    release_fds(d);
    complete(k, d);
}

static void run_root(worker_t *k, task_t *t) {
    walk_t *w = k->w;
    const params_t *P = &w->P;
    int ri = t->root_index;
    const char *path = w->roots[ri];
    size_t plen = strlen(path);
    struct stat st;
    int follow = P->follow_roots;
    io_begin(w);
    int rc = follow ? stat(path, &st) : lstat(path, &st);
    if (rc && follow) rc = lstat(path, &st);   /* dangling link: report the link */
    io_end(w);
    if (rc) {
        report_error(k, path, plen, errno, OP_STAT, ri);
        return;
    }
    __atomic_add_fetch(&w->visited, 1, __ATOMIC_RELAXED);
    char type = type_of_mode(st.st_mode);
    int is_dir = type == 'd';
    const char *base = strrchr(path, '/');
    /* basename for -name: trailing slashes are ignored, "/" stays "/" */
    char namebuf[PATH_MAX + 1];
    {
        size_t n = plen;
        while (n > 1 && path[n - 1] == '/') n--;
        size_t s = n;
        while (s > 0 && path[s - 1] != '/') s--;
        if (n - s > PATH_MAX) n = s + PATH_MAX;
        if (n == s && n > 0) { s = n - 1; }
        memcpy(namebuf, path + s, n - s); namebuf[n - s] = 0;
        base = namebuf;
    }
    const char *dpath = w->dests ? w->dests[ri] : NULL;
    size_t dplen = dpath ? strlen(dpath) : 0;

    switch (P->mode) {
    case M_FIND:
        if (P->mindepth <= 0 && find_match(P, base, type, &st))
            emit(k, path, plen, 0, ri, type, &st, 0, 0, 0);
        break;
    case M_DU:
        if (!is_dir) {
            if (st.st_nlink > 1 && set_insert(w->shards, st.st_dev, st.st_ino) == 0) return;
            emit(k, path, plen, 0, ri, type, &st, st.st_size, st.st_blocks, 1);
            return;
        }
        break;
    case M_CHMOD:
        if (type != 'l') {
            mode_t nm = mode_adjust(st.st_mode, is_dir, P, P->umask);
            if ((nm & 07777) != (st.st_mode & 07777)) {
                io_begin(w); rc = chmod(path, nm); io_end(w);
                if (rc) report_error(k, path, plen, errno, OP_CHMOD, ri);
            }
            if (!rc) chmod_surprise(k, path, plen, st.st_mode, nm, is_dir, ri);
        }
        if (!P->follow_roots && type == 'l') return;
        break;
    case M_CHOWN:
        io_begin(w);
        rc = follow ? chown(path, P->c_uid, P->c_gid) : lchown(path, P->c_uid, P->c_gid);
        io_end(w);
        if (rc) report_error(k, path, plen, errno, OP_CHOWN, ri);
        break;
    case M_RM:
        if (!is_dir) {
            io_begin(w); rc = unlink(path); io_end(w);
            if (rc) report_error(k, path, plen, errno, OP_UNLINK, ri);
            else if (P->verbose > 0) emit(k, path, plen, 0, ri, type, NULL, 0, 0, 0);
            return;
        }
        break;
    case M_CP:
        if (is_dir) {
            io_begin(w); rc = mkdir(dpath, (st.st_mode & 07777) | S_IRWXU); io_end(w);
            if (rc && errno != EEXIST) { report_error(k, dpath, dplen, errno, OP_MKDIR, ri); return; }
        } else {
            /* a single non-directory root: copy it relative to the cwd */
            copy_one(k, AT_FDCWD, path, path, plen, AT_FDCWD, dpath, dpath, dplen, &st, ri);
            return;
        }
        break;
    }
    if (!is_dir || P->maxdepth == 0) return;
    node_t *n = new_node(NULL, path, plen, dpath, dplen, 0, ri, &st);
    if (!n) { w->oom = 1; return; }
    t->kind = T_LIST; t->dir = n;
    run_list(k, t);
}

/* ---------------------------------------------------------------- workers */

static void *worker_main(void *arg) {
    walk_t *w = arg;
    worker_t k = { .w = w };
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->sn && w->outstanding && !w->abort) {
            pthread_mutex_unlock(&w->mu);
            flush(&k, 1);             /* idle: hand over what we have */
            pthread_mutex_lock(&w->mu);
            if (w->sn || !w->outstanding || w->abort) break;
            pthread_cond_wait(&w->cv, &w->mu);
        }
        if (w->abort || !w->sn) break;
        task_t *t = w->stack[--w->sn];
        pthread_mutex_unlock(&w->mu);
        if (t->kind == T_ROOT) run_root(&k, t);
        else if (t->kind == T_LIST) run_list(&k, t);
        else run_chunk(&k, t);
        free(t);
        flush(&k, 0);
        pthread_mutex_lock(&w->mu);
        if (--w->outstanding == 0) pthread_cond_broadcast(&w->cv);
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    flush(&k, 1);
    batch_free(k.b);
    free(k.path.p); free(k.dpath.p); free(k.copybuf); free(k.dirbuf);
    pthread_mutex_lock(&w->omu);
    w->live_workers--;
    pthread_cond_broadcast(&w->ocv);
    pthread_mutex_unlock(&w->omu);
    return NULL;
}

/* ---------------------------------------------------------------- Python glue */

static PyTypeObject WalkType;

static int dict_int(PyObject *d, const char *key, long long def, long long *out) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None) { *out = def; return 0; }
    *out = PyLong_AsLongLong(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static char **bytes_list(PyObject *seq, int *n) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of bytes");
    if (!fast) return NULL;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    char **out = calloc(len + 1, sizeof(char *));
    for (Py_ssize_t i = 0; out && i < len; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(fast, i);
        char *s; Py_ssize_t sl;
        if (PyBytes_AsStringAndSize(it, &s, &sl) < 0) { Py_DECREF(fast); return NULL; }
        out[i] = strndup(s, sl);
    }
    *n = (int)len;
    Py_DECREF(fast);
    return out;
}

static void walk_stop(walk_t *w) {
    if (!w->started || w->joined) return;
    pthread_mutex_lock(&w->mu);
    w->abort = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < w->nthreads; i++) pthread_join(w->tids[i], NULL);
    Py_END_ALLOW_THREADS
    w->joined = 1;
}

static void walk_dealloc(walk_t *w) {
    walk_stop(w);
    while (w->ohead) { batch_t *b = w->ohead; w->ohead = b->next;
        if (w->P.out != OUT_RECORDS) for (size_t i = 0; i < b->nrec; i++) free((void *)b->recs[i].off);
        batch_free(b); }
    for (size_t i = 0; i < w->sn; i++) free(w->stack[i]);   /* aborted: nodes leak, by design small */
    free(w->stack);
    for (int i = 0; i < NSHARD; i++) { free(w->shards[i].keys); pthread_mutex_destroy(&w->shards[i].mu); }
    for (int i = 0; i < w->nroots; i++) { free(w->roots[i]); if (w->dests) free(w->dests[i]); }
    free(w->roots); free(w->dests); free(w->tids); free(w->P.name_pat); free(w->P.chg);
    if (w->throttle) sem_destroy(&w->inflight);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *start(PyObject *self, PyObject *args) {
    PyObject *roots, *dests, *opts;
    if (!PyArg_ParseTuple(args, "OOO!", &roots, &dests, &PyDict_Type, &opts)) return NULL;
    walk_t *w = PyObject_New(walk_t, &WalkType);
    if (!w) return NULL;
    memset((char *)w + sizeof(PyObject), 0, sizeof(walk_t) - sizeof(PyObject));
    pthread_mutex_init(&w->mu, NULL); pthread_cond_init(&w->cv, NULL);
    pthread_mutex_init(&w->omu, NULL); pthread_cond_init(&w->ocv, NULL);
    for (int i = 0; i < NSHARD; i++) pthread_mutex_init(&w->shards[i].mu, NULL);
    params_t *P = &w->P;
    long long v;
#define GET(key, def, field) do { if (dict_int(opts, key, def, &v)) goto fail; field = v; } while (0)
    GET("mode", M_FIND, P->mode); GET("out", OUT_NONE, P->out); GET("sep", '\n', P->sep);
    GET("threads", 2, P->threads); GET("max_inflight", 0, P->max_inflight); GET("chunk", 0, P->chunk);
    GET("need_stat", 0, P->need_stat); GET("follow_roots", 0, P->follow_roots);
    GET("maxdepth", -1, P->maxdepth); GET("mindepth", 0, P->mindepth);
    GET("typemask", 0, P->typemask); GET("name_flags", 0, P->name_flags);
    GET("size_op", 0, P->size_op); GET("size_n", 0, P->size_n); GET("size_unit", 512, P->size_unit);
    GET("mtime_op", 0, P->mtime_op); GET("mtime_n", 0, P->mtime_n);
    GET("newer", 0, P->newer); GET("newer_ns", 0, P->newer_ns);
    GET("user", 0, P->user); GET("uid", 0, P->uid);
    GET("umask", 022, P->umask); GET("c_uid", -1, P->c_uid); GET("c_gid", -1, P->c_gid);
    GET("du_all", 0, P->du_all); GET("du_maxdepth", -1, P->du_maxdepth); GET("diagnose", 0, P->diagnose); GET("verbose", 0, P->verbose); GET("preserve", 0, P->preserve);
#undef GET
    {
        PyObject *nowo = PyDict_GetItemString(opts, "now");
        P->now = nowo ? PyFloat_AsDouble(nowo) : (double)time(NULL);
        PyObject *pat = PyDict_GetItemString(opts, "name_pat");
        if (pat && pat != Py_None) {
            char *s; Py_ssize_t sl;
            if (PyBytes_AsStringAndSize(pat, &s, &sl) < 0) goto fail;
            P->name_pat = strndup(s, sl);
        }
        PyObject *chg = PyDict_GetItemString(opts, "changes");
        if (chg && chg != Py_None) {
            Py_ssize_t n = PySequence_Size(chg);
            P->chg = calloc(n + 1, sizeof(modechg_t)); P->nchg = (int)n;
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *t = PySequence_GetItem(chg, i);
                int op, flag; unsigned int a, val, m;
                if (!t || !PyArg_ParseTuple(t, "iiIII", &op, &flag, &a, &val, &m)) { Py_XDECREF(t); goto fail; }
                Py_DECREF(t);
                P->chg[i] = (modechg_t){ op, flag, a, val, m };
            }
        }
    }
    if (P->mode != M_FIND && P->mode != M_RM) P->need_stat = 1;
    if (P->threads < 1) P->threads = 1;
    if (P->threads > 1024) P->threads = 1024;
    if (!(w->roots = bytes_list(roots, &w->nroots))) goto fail;
    if (dests != Py_None) { int nd; if (!(w->dests = bytes_list(dests, &nd))) goto fail;
        if (nd != w->nroots) { PyErr_SetString(PyExc_ValueError, "dests must match roots"); goto fail; } }
    if (P->max_inflight > 0 && P->max_inflight < P->threads) {
        w->throttle = 1; sem_init(&w->inflight, 0, P->max_inflight);
    }
    /* many directories may be open at once on wide trees */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }

    for (int i = w->nroots - 1; i >= 0; i--) {   /* LIFO: first root first */
        task_t *t = calloc(1, sizeof(task_t));
        t->kind = T_ROOT; t->root_index = i;
        push_task(w, t);
    }
    w->nthreads = P->threads;
    w->live_workers = P->threads;
    w->tids = calloc(P->threads, sizeof(pthread_t));
    pthread_attr_t attr; pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < P->threads; i++) {
        if (pthread_create(&w->tids[i], &attr, worker_main, w)) {
            /* fewer threads is still correct */
            w->nthreads = i;
            pthread_mutex_lock(&w->omu); w->live_workers = i; pthread_mutex_unlock(&w->omu);
            break;
        }
    }
    pthread_attr_destroy(&attr);
    w->started = 1;
    if (w->nthreads == 0) { PyErr_SetString(PyExc_OSError, "cannot start threads"); Py_DECREF(w); return NULL; }
    return (PyObject *)w;
fail:
    Py_DECREF(w);
    return NULL;
}

static PyObject *stat_tuple(const struct stat *st) {
    return Py_BuildValue("(IKIIKKLKKK)", (unsigned)st->st_mode, (unsigned long long)st->st_nlink,
                         (unsigned)st->st_uid, (unsigned)st->st_gid, (unsigned long long)st->st_size,
                         (unsigned long long)st->st_blocks,
                         (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec,
                         (unsigned long long)st->st_ino, (unsigned long long)st->st_dev,
                         (unsigned long long)st->st_rdev);
}

/* next(timeout) -> (data, errors) | None when finished.
 * data: bytes (paths mode) or list of (path, depth, root, type, stat|None, v1, v2, v3) */
/* wait up to timeout for the next batch: 1 = walk finished, 0 = *out is the batch or NULL */
static int walk_take(walk_t *w, double timeout, batch_t **out) {
    batch_t *b = NULL;
    int finished = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&w->omu);
    if (!w->ohead && w->live_workers > 0) {
        struct timeval now; gettimeofday(&now, NULL);
        struct timespec dl;
        double t = now.tv_sec + now.tv_usec / 1e6 + timeout;
        dl.tv_sec = (time_t)t; dl.tv_nsec = (long)((t - (double)dl.tv_sec) * 1e9);
        ATOMIC_STORE(&w->consumer_waiting, 1);
        while (!w->ohead && w->live_workers > 0)
            if (pthread_cond_timedwait(&w->ocv, &w->omu, &dl) == ETIMEDOUT) break;
        ATOMIC_STORE(&w->consumer_waiting, 0);
    }
    if (w->ohead) { b = w->ohead; w->ohead = b->next; if (!w->ohead) w->otail = NULL; }
    else if (w->live_workers == 0) finished = 1;
    pthread_mutex_unlock(&w->omu);
    Py_END_ALLOW_THREADS
    *out = b;
    return finished;
}

static PyObject *walk_next(walk_t *w, PyObject *args) {
    double timeout = 0.2;
    if (!PyArg_ParseTuple(args, "|d", &timeout)) return NULL;
    batch_t *b = NULL;
    int finished = walk_take(w, timeout, &b);
    if (finished) {
        walk_stop(w);
        if (w->oom) return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    PyObject *errs = PyList_New(0);
    if (!b) { PyObject *r = Py_BuildValue("(yN)", "", errs); return r; }
    PyObject *data;
    if (w->P.out == OUT_RECORDS) {
        data = PyList_New(0);
        for (size_t i = 0; i < b->nrec; i++) {
            rec_t *r = &b->recs[i];
            PyObject *item;
            if (r->kind == 1) {
                item = Py_BuildValue("(y#iii)", b->data.p + r->off, (Py_ssize_t)r->plen, r->err, r->op, r->depth);
                PyList_Append(errs, item);
            } else {
                PyObject *st = r->has_stat ? stat_tuple(&r->st) : (Py_INCREF(Py_None), Py_None);
                item = Py_BuildValue("(y#iiCNKKK)", b->data.p + r->off, (Py_ssize_t)r->plen, r->depth, r->root,
                                     (int)(unsigned char)r->type, st, (unsigned long long)r->v1,
                                     (unsigned long long)r->v2, (unsigned long long)r->v3);
                PyList_Append(data, item);
            }
            Py_XDECREF(item);
        }
    } else {
        data = PyBytes_FromStringAndSize(b->data.p ? b->data.p : "", (Py_ssize_t)b->data.len);
        for (size_t i = 0; i < b->nrec; i++) {
            rec_t *r = &b->recs[i];
            PyObject *item = Py_BuildValue("(y#iii)", (char *)r->off, (Py_ssize_t)r->plen, r->err, r->op, r->depth);
            free((void *)r->off);
            PyList_Append(errs, item);
            Py_XDECREF(item);
        }
    }
    batch_free(b);
    return Py_BuildValue("(NN)", data, errs);
}

static PyObject *walk_close(walk_t *w, PyObject *unused) {
    walk_stop(w);
    Py_RETURN_NONE;
}

static PyObject *walk_visited(walk_t *w, void *unused) {
    return PyLong_FromLongLong(__atomic_load_n(&w->visited, __ATOMIC_RELAXED));
}

static PyObject *walk_collect(walk_t *w, PyObject *args);
static PyMethodDef walk_methods[] = {
    {"collect", (PyCFunction)walk_collect, METH_VARARGS, "collect(ls_tree, timeout) -> errors | None when finished"},
    {"next", (PyCFunction)walk_next, METH_VARARGS, "next batch or None when finished"},
    {"close", (PyCFunction)walk_close, METH_NOARGS, "stop the workers"},
    {NULL}
};
static PyGetSetDef walk_getset[] = {
    {"visited", (getter)walk_visited, NULL, "entries seen so far", NULL},
    {NULL}
};
static PyTypeObject WalkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vfolder_manager.ptools._core.Walk",
    .tp_basicsize = sizeof(walk_t),
    .tp_dealloc = (destructor)walk_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = walk_methods,
    .tp_getset = walk_getset,
};

static PyObject *fs_magic(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "y", &path)) return NULL;
    struct statfs s;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = statfs(path, &s);
    Py_END_ALLOW_THREADS
    if (rc) return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    return PyLong_FromUnsignedLong((unsigned long)(unsigned int)s.f_type);
}


/* ---------------------------------------------------------------- ls -l rows */
/* The rows of `ls -l` are the one place where per-entry Python formatting
 * (mode string, names, time, padding) cost pls 4x against ls on a warm local
 * tree; this is formatting.ls_long_lines in C, byte for byte. */

typedef struct { unsigned id; char name[64]; } idname_t;
static idname_t ucache[64], gcache[64];
static int nucache, ngcache;

static const char *id_name(int group, unsigned id) {
    idname_t *c = group ? gcache : ucache;
    int *n = group ? &ngcache : &nucache;
    for (int i = 0; i < *n; i++) if (c[i].id == id) return c[i].name;
    static char tmp[64];
    char buf[16384];
    const char *nm = NULL;
    if (group) {
        struct group g, *gp = NULL;
        if (getgrgid_r(id, &g, buf, sizeof buf, &gp) == 0 && gp) nm = gp->gr_name;
    } else {
        struct passwd pw, *pp = NULL;
        if (getpwuid_r(id, &pw, buf, sizeof buf, &pp) == 0 && pp) nm = pp->pw_name;
    }
    idname_t *slot = *n < 64 ? &c[(*n)++] : NULL;
    char *dst = slot ? slot->name : tmp;
    if (nm && strlen(nm) < 64) strcpy(dst, nm); else snprintf(dst, 64, "%u", id);
    if (slot) slot->id = id;
    return dst;
}

/* size holds the size, or for a device its major number (minor: devminor) */
typedef struct { char mode[11], nlink[24], user[64], group[64], size[24], devminor[24], tm[32]; int dev;
                 const char *name; Py_ssize_t nlen; const char *target; Py_ssize_t tlen; long long mtime_ns; } lsrow_t;

static void ls_cols_v(const unsigned long long *v, lsrow_t *r);
/* "%llu" without printf (printf was ~10% of pls -lR) */
static void utoa10(unsigned long long v, char *out) {
    char tmp[24]; int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = 0;
}
static int ls_cols(PyObject *st, lsrow_t *r) {
    unsigned long long v[10];
    if (!PySequence_Check(st) || PySequence_Size(st) < 10) { PyErr_SetString(PyExc_TypeError, "stat tuple expected"); return -1; }
    for (int i = 0; i < 10; i++) {
        PyObject *o = PyTuple_Check(st) ? (Py_INCREF(PyTuple_GET_ITEM(st, i)), PyTuple_GET_ITEM(st, i)) : PySequence_GetItem(st, i);
        if (!o) return -1;
        v[i] = i == 6 ? (unsigned long long)PyLong_AsLongLong(o) : PyLong_AsUnsignedLongLong(o);
        Py_DECREF(o);
        if (PyErr_Occurred()) return -1;
    }
    ls_cols_v(v, r);
    return 0;
}

static void ls_cols_v(const unsigned long long *v, lsrow_t *r) {
    r->mtime_ns = (long long)v[6];
    mode_t m = (mode_t)v[0];
    utoa10(v[1], r->nlink);
    strcpy(r->user, id_name(0, (unsigned)v[2]));      /* id_name: always < 64 bytes */
    strcpy(r->group, id_name(1, (unsigned)v[3]));
    r->dev = S_ISCHR(m) || S_ISBLK(m);
    if (r->dev) {
        utoa10(major((dev_t)v[9]), r->size);
        utoa10(minor((dev_t)v[9]), r->devminor);
    } else
        utoa10(v[4], r->size);
    /* mode string, s/S t/T like ls */
    char *s = r->mode;
    s[0] = S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : S_ISCHR(m) ? 'c' : S_ISBLK(m) ? 'b' : S_ISFIFO(m) ? 'p'
         : S_ISSOCK(m) ? 's' : S_ISREG(m) ? '-' : '?';
    static const struct { int shift; mode_t bit; char ch; } w[3] = { {6, S_ISUID, 's'}, {3, S_ISGID, 's'}, {0, S_ISVTX, 't'} };
    for (int i = 0; i < 3; i++) {
        int bits = (m >> w[i].shift) & 7;
        s[1 + 3 * i] = bits & 4 ? 'r' : '-';
        s[2 + 3 * i] = bits & 2 ? 'w' : '-';
        int x = bits & 1;
        s[3 + 3 * i] = (m & w[i].bit) ? (x ? w[i].ch : (char)(w[i].ch - 32)) : (x ? 'x' : '-');
    }
    s[10] = 0;
    r->tm[0] = 0;
}

static void ls_cols_st(const struct stat *st, lsrow_t *r) {
    unsigned long long v[10] = { st->st_mode, st->st_nlink, st->st_uid, st->st_gid, (unsigned long long)st->st_size,
                                 (unsigned long long)st->st_blocks,
                                 (unsigned long long)((long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec),
                                 st->st_ino, st->st_dev, st->st_rdev };
    ls_cols_v(v, r);
}

static void ls_time_c(long long mtime_ns, double now, char *out, size_t n) {
    static const char *mon[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    long long sec = mtime_ns >= 0 ? mtime_ns / 1000000000LL : -((-mtime_ns + 999999999LL) / 1000000000LL);
    time_t tt = (time_t)sec;
    /* files of a tree often share the minute: UTC offsets are whole minutes,
     * so the broken-down time of the same minute can be reused */
    static long long last_min = LLONG_MIN;
    static struct tm last_tm;
    struct tm lt;
    long long minute = sec >= 0 ? sec / 60 : -((-sec + 59) / 60);
    if (minute == last_min) lt = last_tm;
    else {
        if (!localtime_r(&tt, &lt)) { snprintf(out, n, "%lld", sec); return; }
        last_min = minute; last_tm = lt;
    }
    double t = (double)mtime_ns / 1e9;
    const double six_months = 31556952 / 2;
    int recent = now - six_months < t && t <= now;
    /* the same minute and the same side of the six-month line print the same */
    static long long last_out_min = LLONG_MIN; static int last_recent; static char last_out[32];
    if (minute == last_out_min && recent == last_recent && n <= sizeof last_out) { memcpy(out, last_out, n); return; }
    if (recent) snprintf(out, n, "%s %2d %02d:%02d", mon[lt.tm_mon], lt.tm_mday, lt.tm_hour, lt.tm_min);
    else snprintf(out, n, "%s %2d  %d", mon[lt.tm_mon], lt.tm_mday, lt.tm_year + 1900);
    if (n <= sizeof last_out) { memcpy(last_out, out, n); last_out_min = minute; last_recent = recent; }
}

/* rows[0..n) are printed, rows[n..n+nx) only widen the columns; -1 = out of memory */
static int ls_emit(buf_t *b, lsrow_t *rows, Py_ssize_t n, Py_ssize_t nx, double now) {
    size_t wl = 0, wu = 0, wg = 0, ws = 0, wmaj = 0, wmin = 0;
    for (Py_ssize_t i = 0; i < n + nx; i++) {
        lsrow_t *r = &rows[i];
        if (i < n) ls_time_c(r->mtime_ns, now, r->tm, sizeof r->tm);
        size_t l;
        if ((l = strlen(r->nlink)) > wl) wl = l;
        if ((l = strlen(r->user)) > wu) wu = l;
        if ((l = strlen(r->group)) > wg) wg = l;
        if (r->dev) {
            /* GNU ls: majors and minors are right-aligned in columns of their
             * own, and "MAJ, MIN" widens the size column (gobble_file) */
            if ((l = strlen(r->size)) > wmaj) wmaj = l;
            if ((l = strlen(r->devminor)) > wmin) wmin = l;
            if (wmaj + 2 + wmin > ws) ws = wmaj + 2 + wmin;
        } else if ((l = strlen(r->size)) > ws) ws = l;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        lsrow_t *r = &rows[i];
        /* "%s %*s %-*s %-*s %*s %s " then name [-> target] "\n" */
        size_t tml = strlen(r->tm);
        if (buf_reserve(b, 10 + wl + wu + wg + ws + tml + 6 + r->nlen + (r->target ? 4 + r->tlen : 0) + 1)) return -1;
        char *o = b->p + b->len;
        memcpy(o, r->mode, 10); o += 10; *o++ = ' ';
        size_t l = strlen(r->nlink); memset(o, ' ', wl - l); o += wl - l; memcpy(o, r->nlink, l); o += l; *o++ = ' ';
        l = strlen(r->user); memcpy(o, r->user, l); o += l; memset(o, ' ', wu - l); o += wu - l; *o++ = ' ';
        l = strlen(r->group); memcpy(o, r->group, l); o += l; memset(o, ' ', wg - l); o += wg - l; *o++ = ' ';
        if (r->dev) {      /* "%*s, %*s " with the blanks the size column has to spare in front */
            l = strlen(r->size); memset(o, ' ', ws - (wmaj + 2 + wmin) + wmaj - l); o += ws - (wmaj + 2 + wmin) + wmaj - l;
            memcpy(o, r->size, l); o += l; *o++ = ','; *o++ = ' ';
            l = strlen(r->devminor); memset(o, ' ', wmin - l); o += wmin - l; memcpy(o, r->devminor, l); o += l; *o++ = ' ';
        } else {
            l = strlen(r->size); memset(o, ' ', ws - l); o += ws - l; memcpy(o, r->size, l); o += l; *o++ = ' ';
        }
        memcpy(o, r->tm, tml); o += tml; *o++ = ' ';
        memcpy(o, r->name, r->nlen); o += r->nlen;
        if (r->target) { memcpy(o, " -> ", 4); o += 4; memcpy(o, r->target, r->tlen); o += r->tlen; }
        *o++ = '\n';
        b->len = (size_t)(o - b->p);
    }
    return 0;
}

/* ls_long(entries, now, extra) -> bytes: entries are (name, stat, target|None),
 * stat = (mode, nlink, uid, gid, size, blocks, mtime_ns, ino, dev, rdev);
 * extra stats only widen the columns.  Lines end with "\n". */
static PyObject *ls_long(PyObject *self, PyObject *args) {
    PyObject *entries, *extra; double now;
    if (!PyArg_ParseTuple(args, "OdO", &entries, &now, &extra)) return NULL;
    PyObject *fe = PySequence_Fast(entries, "entries"), *fx = PySequence_Fast(extra, "extra");
    if (!fe || !fx) { Py_XDECREF(fe); Py_XDECREF(fx); return NULL; }
    static int tz_done;
    if (!tz_done) { tzset(); tz_done = 1; }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fe), nx = PySequence_Fast_GET_SIZE(fx);
    lsrow_t *rows = calloc(n + nx + 1, sizeof(lsrow_t));
    PyObject *res = NULL;
    if (!rows) { PyErr_NoMemory(); goto out; }
    for (Py_ssize_t i = 0; i < n + nx; i++) {
        lsrow_t *r = &rows[i];
        PyObject *st;
        if (i < n) {
            PyObject *e = PySequence_Fast_GET_ITEM(fe, i);
            if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 3) { PyErr_SetString(PyExc_TypeError, "(name, stat, target) expected"); goto out; }
            char *p;
            if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(e, 0), &p, &r->nlen) < 0) goto out;
            r->name = p;
            PyObject *tg = PyTuple_GET_ITEM(e, 2);
            if (tg != Py_None) { if (PyBytes_AsStringAndSize(tg, &p, &r->tlen) < 0) goto out; r->target = p; }
            st = PyTuple_GET_ITEM(e, 1);
        } else st = PySequence_Fast_GET_ITEM(fx, i - n);
        if (ls_cols(st, r) < 0) goto out;
    }
    buf_t b = {0};
    if (ls_emit(&b, rows, n, nx, now)) { free(b.p); PyErr_NoMemory(); goto out; }
    res = PyBytes_FromStringAndSize(b.p ? b.p : "", (Py_ssize_t)b.len);
    free(b.p);
out:
    free(rows);
    Py_DECREF(fe); Py_DECREF(fx);
    return res;
}

/* ---------------------------------------------------------------- ls tree */
/* pls without --json: the walk's batches are kept as they are (no Python
 * object per entry), indexed by (parent directory, name) in byte order -- the
 * order of `LC_ALL=C ls` -- and each directory's block (names, or "total" and
 * the -l rows) is formatted here, so Python only writes bytes. */

typedef struct { const char *par, *name, *path; size_t parlen, nlen, plen; const rec_t *r; } lsent_t;

typedef struct {
    PyObject_HEAD
    batch_t **batches; size_t nb, cb;
    lsent_t *ents; size_t n, cap;
    char **roots; size_t *rootlen; int nroots;
    int sorted;
} lstree_t;

static PyTypeObject LsTreeType;

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al < bl ? -1 : al > bl);
}
static int lsent_cmp(const void *x, const void *y) {
    const lsent_t *a = x, *b = y;
    int c = bytes_cmp(a->par, a->parlen, b->par, b->parlen);
    return c ? c : bytes_cmp(a->name, a->nlen, b->name, b->nlen);
}
static int lsent_name_cmp(const void *x, const void *y) {
    const lsent_t *a = x, *b = y;
    return bytes_cmp(a->name, a->nlen, b->name, b->nlen);
}

/* Sort by (parent, name) without comparing parents per entry: a directory's
 * entries arrive as consecutive runs (one listing or chunk per task), so the
 * runs are sorted by parent and only each directory's entries by name. */
typedef struct { const char *par; size_t parlen, start, len; } lsrun_t;
static int lsrun_cmp(const void *x, const void *y) {
    const lsrun_t *a = x, *b = y;
    int c = bytes_cmp(a->par, a->parlen, b->par, b->parlen);
    return c ? c : (a->start < b->start ? -1 : a->start > b->start);
}
static int lstree_sort(lstree_t *t) {
    size_t nr = 0, o = 0;
    lsrun_t *runs = malloc((t->n + 1) * sizeof *runs);
    lsent_t *out = malloc((t->n + 1) * sizeof *out);
    if (!runs || !out) { free(runs); free(out); return -1; }
    for (size_t i = 0; i < t->n; i++) {
        const lsent_t *e = &t->ents[i];
        lsrun_t *last = nr ? &runs[nr - 1] : NULL;
        if (last && last->parlen == e->parlen && (last->par == e->par || !memcmp(last->par, e->par, e->parlen))) {
            last->len++;
            continue;
        }
        runs[nr++] = (lsrun_t){ e->par, e->parlen, i, 1 };
    }
    qsort(runs, nr, sizeof *runs, lsrun_cmp);
    for (size_t r = 0; r < nr;) {
        size_t g0 = o, q = r;
        for (; q < nr && bytes_cmp(runs[q].par, runs[q].parlen, runs[r].par, runs[r].parlen) == 0; q++) {
            memcpy(&out[o], &t->ents[runs[q].start], runs[q].len * sizeof *out);
            o += runs[q].len;
        }
        qsort(&out[g0], o - g0, sizeof *out, lsent_name_cmp);
        r = q;
    }
    free(runs); free(t->ents);
    t->ents = out; t->cap = t->n + 1;
    return 0;
}

static PyObject *lstree_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *roots;
    if (!PyArg_ParseTuple(args, "O", &roots)) return NULL;
    lstree_t *t = (lstree_t *)type->tp_alloc(type, 0);
    if (!t) return NULL;
    t->roots = bytes_list(roots, &t->nroots);
    if (!t->roots) { Py_DECREF(t); return NULL; }
    t->rootlen = calloc(t->nroots + 1, sizeof(size_t));
    if (!t->rootlen) { Py_DECREF(t); return PyErr_NoMemory(); }
    for (int i = 0; i < t->nroots; i++) t->rootlen[i] = strlen(t->roots[i]);
    return (PyObject *)t;
}

static void lstree_dealloc(lstree_t *t) {
    for (size_t i = 0; i < t->nb; i++) batch_free(t->batches[i]);
    free(t->batches); free(t->ents);
    if (t->roots) { for (int i = 0; i < t->nroots; i++) free(t->roots[i]); free(t->roots); }
    free(t->rootlen);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* walk.collect(tree, timeout) -> errors list, or None when the walk finished:
 * the records of the next batch go into the tree instead of Python tuples */
static PyObject *walk_collect(walk_t *w, PyObject *args) {
    lstree_t *t; double timeout = 0.2;
    if (!PyArg_ParseTuple(args, "O!|d", &LsTreeType, &t, &timeout)) return NULL;
    if (w->P.out != OUT_RECORDS) { PyErr_SetString(PyExc_ValueError, "collect needs OUT_RECORDS"); return NULL; }
    batch_t *b = NULL;
    if (walk_take(w, timeout, &b)) {
        walk_stop(w);
        if (w->oom) return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    PyObject *errs = PyList_New(0);
    if (!errs || !b) { if (b) batch_free(b); return errs; }
    if (t->nb == t->cb) {
        size_t cap = t->cb ? t->cb * 2 : 64;
        batch_t **nbs = realloc(t->batches, cap * sizeof *nbs);
        if (!nbs) { batch_free(b); Py_DECREF(errs); return PyErr_NoMemory(); }
        t->batches = nbs; t->cb = cap;
    }
    t->batches[t->nb++] = b;
    if (t->n + b->nrec > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->n + b->nrec) cap *= 2;
        lsent_t *ne = realloc(t->ents, cap * sizeof *ne);
        if (!ne) { Py_DECREF(errs); return PyErr_NoMemory(); }
        t->ents = ne; t->cap = cap;
    }
    for (size_t i = 0; i < b->nrec; i++) {
        const rec_t *r = &b->recs[i];
        const char *path = b->data.p + r->off;
        if (r->kind == 1) {
            PyObject *item = Py_BuildValue("(y#iii)", path, (Py_ssize_t)r->plen, r->err, r->op, r->depth);
            if (!item || PyList_Append(errs, item)) { Py_XDECREF(item); Py_DECREF(errs); return NULL; }
            Py_DECREF(item);
            continue;
        }
        lsent_t *e = &t->ents[t->n++];
        const char *slash = memrchr(path, '/', r->plen);
        size_t cut = slash ? (size_t)(slash - path) : 0;
        e->r = r; e->path = path; e->plen = r->plen;
        e->name = slash ? slash + 1 : path; e->nlen = r->plen - (slash ? cut + 1 : 0);
        if (r->depth == 1 && r->root >= 0 && r->root < t->nroots) { e->par = t->roots[r->root]; e->parlen = t->rootlen[r->root]; }
        else { e->par = path; e->parlen = cut; }
    }
    t->sorted = 0;
    return errs;
}

/* tree.block(dir, long, all, almost_all, recursive, now) -> (bytes, [subdirectory paths])
 * what `ls` prints for one directory (without its "dir:" header), in byte
 * order; the subdirectories (-R) in the order they are listed. */
static PyObject *lstree_block(lstree_t *t, PyObject *args) {
    const char *d; Py_ssize_t dlen; int lng, all, almost, recursive; double now;
    if (!PyArg_ParseTuple(args, "y#ppppd", &d, &dlen, &lng, &all, &almost, &recursive, &now)) return NULL;
    if (!t->sorted) { if (t->n && lstree_sort(t)) return PyErr_NoMemory(); t->sorted = 1; }
    static int tz_done;
    if (!tz_done) { tzset(); tz_done = 1; }
    /* first entry whose parent is d */
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bytes_cmp(t->ents[mid].par, t->ents[mid].parlen, d, dlen) < 0) lo = mid + 1; else hi = mid;
    }
    size_t end = lo;
    while (end < t->n && bytes_cmp(t->ents[end].par, t->ents[end].parlen, d, dlen) == 0) end++;
    int show_all = all || almost;
    size_t cnt = end - lo + 2;
    lsent_t *sel = malloc(cnt * sizeof *sel);
    lsrow_t *rows = NULL;
    struct stat dst[2];
    char *dpath[2] = { NULL, NULL };
    char **targets = NULL;
    buf_t b = {0};
    PyObject *res = NULL, *subs = NULL;
    if (!sel) { PyErr_NoMemory(); goto out; }
    size_t k = 0;
    for (size_t i = lo; i < end; i++)
        if (show_all || t->ents[i].nlen == 0 || t->ents[i].name[0] != '.') sel[k++] = t->ents[i];
    if (all) {
        static const char *dots[2] = { ".", ".." };
        for (int j = 0; j < 2; j++) {
            /* os.path.join(d, dot) */
            size_t need = dlen + 4;
            dpath[j] = malloc(need);
            if (!dpath[j]) { PyErr_NoMemory(); goto out; }
            int slash = dlen == 0 || d[dlen - 1] == '/';
            memcpy(dpath[j], d, dlen);
            size_t pl = dlen;
            if (!slash) dpath[j][pl++] = '/';
            strcpy(dpath[j] + pl, dots[j]);
            pl += strlen(dots[j]);
            int have = 1;
            if (lng) {
                int rc;
                Py_BEGIN_ALLOW_THREADS
                rc = stat(dpath[j], &dst[j]);
                Py_END_ALLOW_THREADS
                have = rc == 0;
            }
            if (!have) continue;      /* no row for an unreadable ./.. in -l */
            lsent_t *e = &sel[k++];
            e->par = d; e->parlen = dlen; e->name = dots[j]; e->nlen = strlen(dots[j]);
            e->path = dpath[j]; e->plen = pl; e->r = NULL;
        }
        qsort(sel, k, sizeof *sel, lsent_name_cmp);
    }
    if (!lng) {
        for (size_t i = 0; i < k; i++)
            if (buf_add(&b, sel[i].name, sel[i].nlen) || buf_add(&b, "\n", 1)) { PyErr_NoMemory(); goto out; }
    } else {
        rows = calloc(k + 1, sizeof *rows);
        targets = calloc(k + 1, sizeof *targets);
        if (!rows || !targets) { PyErr_NoMemory(); goto out; }
        long long blocks = 0;
        size_t m = 0;
        for (size_t i = 0; i < k; i++) {
            const struct stat *st = sel[i].r ? (sel[i].r->has_stat ? &sel[i].r->st : NULL)
                                             : &dst[sel[i].name[1] == '.'];
            if (!st) continue;
            blocks += (long long)st->st_blocks;
            lsrow_t *r = &rows[m++];
            ls_cols_st(st, r);
            r->name = sel[i].name; r->nlen = sel[i].nlen;
            char type = sel[i].r ? sel[i].r->type : 'd';
            if (type == 'l') {
                /* _readlink: an unreadable link prints " -> " with nothing after it */
                char *tg = malloc(PATH_MAX + 1);
                if (!tg) { PyErr_NoMemory(); goto out; }
                targets[i] = tg;
                char *pz = strndup(sel[i].path, sel[i].plen);
                if (!pz) { PyErr_NoMemory(); goto out; }
                ssize_t tl;
                Py_BEGIN_ALLOW_THREADS
                tl = readlink(pz, tg, PATH_MAX);
                Py_END_ALLOW_THREADS
                free(pz);
                r->target = tg; r->tlen = tl > 0 ? tl : 0;
            }
        }
        char tot[48];
        int tl = snprintf(tot, sizeof tot, "total %lld\n", (blocks + 1) / 2);
        if (buf_add(&b, tot, tl) || ls_emit(&b, rows, (Py_ssize_t)m, 0, now)) { PyErr_NoMemory(); goto out; }
    }
    subs = PyList_New(0);
    if (!subs) goto out;
    if (recursive)
        for (size_t i = 0; i < k; i++) {
            if (!sel[i].r || sel[i].r->type != 'd') continue;
            PyObject *p = PyBytes_FromStringAndSize(sel[i].path, (Py_ssize_t)sel[i].plen);
            if (!p || PyList_Append(subs, p)) { Py_XDECREF(p); goto out; }
            Py_DECREF(p);
        }
    res = Py_BuildValue("(y#O)", b.p ? b.p : "", (Py_ssize_t)b.len, subs);
out:
    Py_XDECREF(subs);
    if (targets) { for (size_t i = 0; i < k; i++) free(targets[i]); free(targets); }
    free(rows); free(sel); free(b.p);
    free(dpath[0]); free(dpath[1]);
    return res;
}

static PyMethodDef lstree_methods[] = {
    {"block", (PyCFunction)lstree_block, METH_VARARGS, "block(dir, long, all, almost_all, recursive, now) -> (bytes, subdirs)"},
    {NULL}
};
static PyTypeObject LsTreeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vfolder_manager.ptools._core.LsTree",
    .tp_basicsize = sizeof(lstree_t),
    .tp_dealloc = (destructor)lstree_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = lstree_methods,
    .tp_new = lstree_new,
};


static PyMethodDef methods[] = {
    {"start", start, METH_VARARGS, "start(roots, dests, opts) -> Walk"},
    {"fs_magic", fs_magic, METH_VARARGS, "statfs f_type of a path"},
    {"ls_long", ls_long, METH_VARARGS, "ls_long(entries, now, extra) -> bytes of ls -l lines"},
    {NULL}
};
static struct PyModuleDef moddef = { PyModuleDef_HEAD_INIT, "_core", NULL, -1, methods };

PyMODINIT_FUNC PyInit__core(void) {
    if (PyType_Ready(&WalkType) < 0 || PyType_Ready(&LsTreeType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Py_INCREF(&WalkType);
    PyModule_AddObject(m, "Walk", (PyObject *)&WalkType);
    Py_INCREF(&LsTreeType);
    PyModule_AddObject(m, "LsTree", (PyObject *)&LsTreeType);
#define C(n) PyModule_AddIntConstant(m, #n, n)
    C(M_FIND); C(M_DU); C(M_CHMOD); C(M_CHOWN); C(M_RM); C(M_CP);
    C(OUT_NONE); C(OUT_PATHS); C(OUT_RECORDS);
    C(OP_STAT); C(OP_OPENDIR); C(OP_READDIR); C(OP_CHMOD); C(OP_CHOWN); C(OP_UNLINK);
    C(OP_RMDIR); C(OP_MKDIR); C(OP_OPEN); C(OP_COPY); C(OP_SYMLINK); C(OP_UTIME); C(OP_MKNOD); C(OP_CREATE); C(OP_SURPRISE);
    C(MC_ORDINARY); C(MC_X_IF_ANY_X); C(MC_COPY);
#undef C
    return m;
}
