/* The runtime of a library made by `diffc build` (diffc/build.py): what the generated code
   links against when Python, diffc and LLVM are not there. diffc/build.py writes the ctx
   layout (DIFFC_CTX_*, DIFFC_ERR_*) above this file and the library's own tables and entry
   points below it, and compiles the whole with the system C compiler.

   Each call gets a fresh ctx, the thread's arena and the thread's stack limit, so calls from
   several threads at once are safe; the message of a failure is kept per thread. */

#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*diffc_entry_fn)(int64_t *ctx, const void **ins, void **outs);

/* A place in the program where native code can fail: its kind (DIFFC_ERR_*), its location
   ("file:line:col"), what failed ("index", or the recursive function's name) and the source
   line with a caret under it. */
typedef struct {
    int kind;
    const char *where;
    const char *what;
    const char *excerpt;
} diffc_site;

/* The count of SIGINTs that the generated code polls. A library installs no signal handler:
   it stays 0, and a call runs to its end. */
int64_t diffc_sigints = 0;

/* Nonzero: calls flush subnormal floats to zero (diffc.set_flush_denormal in Python). A library
   keeps IEEE arithmetic unless its caller sets this. */
int64_t diffc_flush_denormal = 0;

/* A parallel loop of the generated code (diffc_parallel_for in diffc/runtime/threads.py) runs
   on the calling thread: a library starts no threads of its own. */
void diffc_parallel_for(void (*fn)(void *, int64_t, int64_t), void *env, int64_t n, int64_t per_thread) {
    (void)per_thread;
    fn(env, 0, n);
}

static _Thread_local char diffc_message[2048];

static const char *diffc_last_error(void) { return diffc_message; }

static int diffc_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diffc_message, sizeof diffc_message, fmt, ap);
    va_end(ap);
    return code;
}

/* --- the entry function's arena: one per thread, grown when a bigger one is needed ---- */

static pthread_key_t diffc_arena_key;
static pthread_once_t diffc_arena_once = PTHREAD_ONCE_INIT;
static _Thread_local void *diffc_arena;
static _Thread_local size_t diffc_arena_size;

static void diffc_arena_free(void *p) { free(p); }

static void diffc_arena_init(void) { pthread_key_create(&diffc_arena_key, diffc_arena_free); }

static void *diffc_arena_get(size_t bytes) {
    if (bytes <= diffc_arena_size && diffc_arena != NULL)
        return diffc_arena;
    pthread_once(&diffc_arena_once, diffc_arena_init);
    free(diffc_arena);
    diffc_arena = NULL;
    diffc_arena_size = 0;
    pthread_setspecific(diffc_arena_key, NULL);
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p == NULL)
        return NULL;
    diffc_arena = p;
    diffc_arena_size = rounded;
    pthread_setspecific(diffc_arena_key, p); /* freed when the thread ends */
    return p;
}

/* --- the stack limit of recursive code (as diffc/runtime/stack.py finds it) ------------- */

#define DIFFC_STACK_MARGIN (256 << 10)
static _Thread_local int64_t diffc_stack_limit = -1;

static int64_t diffc_stack(void) {
    if (diffc_stack_limit < 0) {
        pthread_attr_t attr;
        void *low = NULL;
        size_t size = 0;
        diffc_stack_limit = 0; /* unknown: only the count of nested calls is checked */
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            if (pthread_attr_getstack(&attr, &low, &size) == 0 && low != NULL && size > DIFFC_STACK_MARGIN)
                diffc_stack_limit = (int64_t)(intptr_t)low + DIFFC_STACK_MARGIN;
            pthread_attr_destroy(&attr);
        }
    }
    return diffc_stack_limit;
}

/* --- a call -------------------------------------------------------------------------- */

static int diffc_call(diffc_entry_fn entry, size_t arena_bytes, const diffc_site *sites, const void **ins,
                      void **outs) {
    int64_t ctx[DIFFC_CTX_WORDS] = {0};
    if (arena_bytes) {
        void *arena = diffc_arena_get(arena_bytes);
        if (arena == NULL)
            return diffc_fail(DIFFC_ERR_MEMORY, "out of memory: cannot allocate %zu bytes for the arrays of a call",
                              arena_bytes);
        ctx[DIFFC_CTX_ARENA] = (int64_t)(intptr_t)arena;
    }
    ctx[DIFFC_CTX_STACK] = diffc_stack();
    entry(ctx, ins, outs);
    int code = (int)ctx[DIFFC_CTX_ERR];
    if (code == 0) {
        diffc_message[0] = 0;
        return 0;
    }
    const diffc_site *s = &sites[ctx[DIFFC_CTX_SITE]];
    long long a = ctx[DIFFC_CTX_A], b = ctx[DIFFC_CTX_B];
    switch (code) {
    case DIFFC_ERR_BOUNDS:
        return diffc_fail(code, "%s: error: %s %lld is out of bounds for an axis of length %lld%s", s->where, s->what,
                          a, b, s->excerpt);
    case DIFFC_ERR_NEGATIVE:
        return diffc_fail(code, "%s: error: %s is %lld: it must be 0 or more%s", s->where, s->what, a, s->excerpt);
    case DIFFC_ERR_MEMORY:
        return diffc_fail(code, "%s: error: out of memory: cannot allocate %lld bytes for %s%s", s->where, a, s->what,
                          s->excerpt);
    case DIFFC_ERR_STACK:
        return diffc_fail(code,
                          "%s: error: recursion too deep: %lld nested calls of `%s` fill the native stack"
                          " (is a base case missing?)%s",
                          s->where, a, s->what, s->excerpt);
    case DIFFC_ERR_DEPTH:
        return diffc_fail(code,
                          "%s: error: recursion too deep: more than %lld nested calls of `%s`"
                          " (is a base case missing?)%s",
                          s->where, b, s->what, s->excerpt);
    default:
        return diffc_fail(code, "%s: error: native code failed%s", s->where, s->excerpt);
    }
}

/* --- print: values written as diffc's runtime writes them (runtime/values.py) ---------- */

enum { DIFFC_F64, DIFFC_F32, DIFFC_I64, DIFFC_BOOL };

/* x as Python's repr writes a float: the shortest digits that read back as x; positional
   from 1e-4 to 1e16, else with an exponent of at least two digits. */
static void diffc_put_float(double x) {
    if (isnan(x)) {
        fputs("NaN", stdout);
        return;
    }
    if (isinf(x)) {
        fputs(x > 0 ? "Infinity" : "-Infinity", stdout);
        return;
    }
    char buf[40], digits[24];
    int prec;
    for (prec = 1; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
    const char *p = buf;
    if (*p == '-') {
        fputc('-', stdout);
        p++;
    }
    int n = 0;
    for (; *p != 'e'; p++)
        if (*p != '.')
            digits[n++] = *p;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = 0;
    int e = atoi(p + 1);
    if (e >= -4 && e < 16) {
        if (e < 0) {
            fputs("0.", stdout);
            for (int k = 0; k < -e - 1; k++)
                fputc('0', stdout);
            fputs(digits, stdout);
        } else {
            for (int k = 0; k <= e; k++)
                fputc(k < n ? digits[k] : '0', stdout);
            fputc('.', stdout);
            fputs(n > e + 1 ? digits + e + 1 : "0", stdout);
        }
    } else {
        fputc(digits[0], stdout);
        if (n > 1)
            printf(".%s", digits + 1);
        printf("e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
}

static const char *diffc_put_scalar(const char *p, int dtype) {
    switch (dtype) {
    case DIFFC_F64:
        diffc_put_float(*(const double *)p);
        return p + 8;
    case DIFFC_F32:
        diffc_put_float(*(const float *)p);
        return p + 4;
    case DIFFC_I64:
        printf("%lld", (long long)*(const int64_t *)p);
        return p + 8;
    default:
        fputs(*(const uint8_t *)p ? "true" : "false", stdout);
        return p + 1;
    }
}

/* An array as nested lists; returns the address after its last element. */
static const char *diffc_put_array(const char *p, int dtype, int rank, const int64_t *shape) {
    if (rank == 0)
        return diffc_put_scalar(p, dtype);
    fputc('[', stdout);
    for (int64_t k = 0; k < shape[0]; k++) {
        if (k)
            fputs(", ", stdout);
        p = diffc_put_array(p, dtype, rank - 1, shape + 1);
    }
    fputc(']', stdout);
    return p;
}

/* --- matrix-vector products that the generated code leaves to BLAS (OpenBLAS's
   scipy_cblas_* names, row-major only, as prims/linalg.py calls them): plain loops here, so
   that the library needs no BLAS. -------------------------------------------------------- */

#define DIFFC_NO_TRANS 111

#define DIFFC_GEMV(NAME, T)                                                                                            \
    void NAME(int order, int ta, int64_t rows, int64_t cols, T alpha, const T *a, int64_t lda, const T *x,             \
              int64_t incx, T beta, T *y, int64_t incy) {                                                              \
        (void)order;                                                                                                   \
        int64_t ny = ta == DIFFC_NO_TRANS ? rows : cols;                                                               \
        for (int64_t i = 0; i < ny; i++)                                                                               \
            y[i * incy] = beta == 0 ? 0 : beta * y[i * incy];                                                          \
        for (int64_t i = 0; i < rows; i++)                                                                             \
            if (ta == DIFFC_NO_TRANS) {                                                                                \
                T s = 0;                                                                                               \
                for (int64_t j = 0; j < cols; j++)                                                                     \
                    s += a[i * lda + j] * x[j * incx];                                                                 \
                y[i * incy] += alpha * s;                                                                              \
            } else {                                                                                                   \
                T xi = alpha * x[i * incx];                                                                            \
                for (int64_t j = 0; j < cols; j++)                                                                     \
                    y[j * incy] += xi * a[i * lda + j];                                                                \
            }                                                                                                          \
    }

DIFFC_GEMV(scipy_cblas_dgemv64_, double)
DIFFC_GEMV(scipy_cblas_sgemv64_, float)
