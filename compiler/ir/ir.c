/* ir.c - the IR's builders and small facts: symbolic dimension arithmetic kept in
 * canonical form, dtype and type printing, the op table from ir_ops.def, and the
 * builders that keep use counts right (append, insert, set operand, erase, replace
 * uses). Called by sema_lower.c while it builds the IR and by every pass. */
#include "ir.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const IrOpInfo ir_op_info[IR_OP_COUNT_] = {
#define X(e, name, nin, nout, traits, attrs) [IR_OP_##e] = { name, nin, nout, traits, attrs },
#include "ir_ops.def"
#undef X
};

/* ================================================================ dims ==== */

static int64_t abs64(int64_t x) { return x < 0 ? -x : x; }

static int64_t gcd64(int64_t a, int64_t b)
{
    a = abs64(a);
    b = abs64(b);
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* A Dim's numerator with room for the terms of a sum before they are merged. */
typedef struct DimTmp {
    int64_t  c, div;
    int      nterms;
    uint32_t sym[2 * DIM_MAX_TERMS];
    int64_t  coef[2 * DIM_MAX_TERMS];
} DimTmp;

/* Adds coef*sym to t, merging with an existing term of the same symbol. */
static bool tmp_add_term(DimTmp *t, uint32_t sym, int64_t coef)
{
    for (int i = 0; i < t->nterms; i++)
        if (t->sym[i] == sym)
            return !__builtin_add_overflow(t->coef[i], coef, &t->coef[i]);
    assert(t->nterms < 2 * DIM_MAX_TERMS);
    t->sym[t->nterms] = sym;
    t->coef[t->nterms++] = coef;
    return true;
}

/* Sorts terms by symbol, drops zero coefficients, divides out the common factor of
 * numerator and divisor. Fails when too many terms remain or a constant is left with
 * a divisor (an inexact division). */
static bool dim_canon(DimTmp *t, Dim *out)
{
    assert(t->div > 0);
    Dim d = { .c = t->c, .div = t->div };
    for (int i = 0; i < t->nterms; i++) {
        if (t->coef[i] == 0)
            continue;
        if (d.nterms == DIM_MAX_TERMS)
            return false;
        int j = d.nterms++;
        for (; j > 0 && d.sym[j - 1] > t->sym[i]; j--) {  // insertion sort by symbol
            d.sym[j] = d.sym[j - 1];
            d.coef[j] = d.coef[j - 1];
        }
        d.sym[j] = t->sym[i];
        d.coef[j] = t->coef[i];
    }
    int64_t g = gcd64(d.c, d.div);
    for (int i = 0; i < d.nterms; i++)
        g = gcd64(g, d.coef[i]);
    d.c /= g;
    d.div /= g;
    for (int i = 0; i < d.nterms; i++)
        d.coef[i] /= g;
    if (d.nterms == 0 && d.div != 1)
        return false;
    *out = d;
    return true;
}

/* Loads k * (numerator of a) into t, scaled so that its divisor becomes a.div * k. */
static bool tmp_add_scaled(DimTmp *t, Dim a, int64_t k)
{
    int64_t c;
    if (__builtin_mul_overflow(a.c, k, &c) || __builtin_add_overflow(t->c, c, &t->c))
        return false;
    for (int i = 0; i < a.nterms; i++) {
        int64_t coef;
        if (__builtin_mul_overflow(a.coef[i], k, &coef) || !tmp_add_term(t, a.sym[i], coef))
            return false;
    }
    return true;
}

/* The constant dim c. */
Dim dim_const(int64_t c)
{
    return (Dim){ .c = c, .div = 1 };
}

/* The dim that is exactly symbol `sym` (an index into IrModule.syms). */
Dim dim_sym(uint32_t sym)
{
    return (Dim){ .div = 1, .nterms = 1, .sym = { sym }, .coef = { 1 } };
}

/* Whether d is a plain integer: no symbols and no divisor. */
bool dim_is_const(Dim d)
{
    return d.nterms == 0 && d.div == 1;
}

/* Equality of canonical dims is equality of their fields. */
bool dim_eq(Dim a, Dim b)
{
    if (a.c != b.c || a.div != b.div || a.nterms != b.nterms)
        return false;
    for (int i = 0; i < a.nterms; i++)
        if (a.sym[i] != b.sym[i] || a.coef[i] != b.coef[i])
            return false;
    return true;
}

/* a + b; false when the sum has too many terms or overflows. */
bool dim_add(Dim a, Dim b, Dim *out)
{
    // a/da + b/db = (a*(L/da) + b*(L/db)) / L with L = lcm(da, db)
    int64_t l;
    if (__builtin_mul_overflow(a.div / gcd64(a.div, b.div), b.div, &l))
        return false;
    DimTmp t = { .div = l };
    if (!tmp_add_scaled(&t, a, l / a.div) || !tmp_add_scaled(&t, b, l / b.div))
        return false;
    return dim_canon(&t, out);
}

/* a - b, as a + (-b). */
bool dim_sub(Dim a, Dim b, Dim *out)
{
    DimTmp t = { .div = b.div };
    Dim neg;
    if (!tmp_add_scaled(&t, b, -1) || !dim_canon(&t, &neg))
        return false;
    return dim_add(a, neg, out);
}

/* a * b with at least one side constant; false for a product of symbols. */
bool dim_mul(Dim a, Dim b, Dim *out)
{
    if (!dim_is_const(a) && !dim_is_const(b))
        return false;  // a product of two symbolic dims is not linear
    if (!dim_is_const(a)) {
        Dim t = a;
        a = b;
        b = t;
    }
    DimTmp t = { .div = b.div };  // a is now the constant factor
    if (!tmp_add_scaled(&t, b, a.c))
        return false;
    return dim_canon(&t, out);
}

/* a / b for a positive constant b; false when a constant result is inexact. */
bool dim_div(Dim a, Dim b, Dim *out)
{
    if (!dim_is_const(b) || b.c <= 0)
        return false;
    DimTmp t = { 0 };
    if (__builtin_mul_overflow(a.div, b.c, &t.div) || !tmp_add_scaled(&t, a, 1))
        return false;
    return dim_canon(&t, out);
}

static void print_sym(Buf *out, const IrModule *m, uint32_t sym)
{
    if (m && sym < m->nsyms && m->syms[sym].name)
        buf_puts(out, m->syms[sym].name);
    else
        buf_printf(out, "s%" PRIu32, sym);
}

/* Prints the numerator "2*T - N + 1"; the constant goes last. */
static void print_numerator(Buf *out, const IrModule *m, Dim d)
{
    for (int i = 0; i < d.nterms; i++) {
        int64_t k = d.coef[i];
        if (i > 0)
            buf_puts(out, k < 0 ? " - " : " + ");
        else if (k < 0)
            buf_putc(out, '-');
        if (abs64(k) != 1)
            buf_printf(out, "%" PRId64 "*", abs64(k));
        print_sym(out, m, d.sym[i]);
    }
    if (d.nterms == 0)
        buf_printf(out, "%" PRId64, d.c);
    else if (d.c != 0)
        buf_printf(out, " %c %" PRId64, d.c < 0 ? '-' : '+', abs64(d.c));
}

/* "T", "2*T + 1", "T/4", "(T + 1)/2": the numerator in parentheses when it has
 * more than one part and a divisor follows. */
void dim_print(Buf *out, const IrModule *m, Dim d)
{
    bool paren = d.div != 1 && (d.nterms > 1 || d.c != 0);
    if (paren)
        buf_putc(out, '(');
    print_numerator(out, m, d);
    if (paren)
        buf_putc(out, ')');
    if (d.div != 1)
        buf_printf(out, "/%" PRId64, d.div);
}

/* ============================================================== shapes ==== */

bool shape_eq(const Shape *a, const Shape *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (!dim_eq(a->dims[i], b->dims[i]))
            return false;
    return true;
}

/* The dtype as written in .tfx; "?" for an out-of-range value. */
const char *dtype_name(DType t)
{
    static const char *const names[DT_COUNT_] = { "f32", "f16", "bf16", "i32" };
    return (unsigned)t < DT_COUNT_ ? names[t] : "?";
}

/* "f32[T, 768]"; a NULL shape prints as a scalar "f32[]". */
void type_print(Buf *out, const IrModule *m, DType dt, const Shape *s)
{
    buf_puts(out, dtype_name(dt));
    buf_putc(out, '[');
    for (int i = 0; s && i < s->rank; i++) {
        if (i > 0)
            buf_puts(out, ", ");
        dim_print(out, m, s->dims[i]);
    }
    buf_putc(out, ']');
}

/* ============================================================= module ===== */

/* Makes room for one more element in an arena array holding n. Capacities are 4, 8,
 * 16, ..., so they need not be stored: the array is full when n is 0 or such a power. */
static void *grow_for_one(Arena *a, void *p, uint32_t n, size_t elem)
{
    if (n == 0)
        return arena_alloc(a, 4 * elem);
    if (n < 4 || (n & (n - 1)) != 0)
        return p;
    return arena_grow(a, p, n * elem, 2 * (size_t)n * elem);
}

static const char *copy_name(IrModule *m, const char *s)
{
    return s ? arena_strdup(m->arena, s) : NULL;
}

/* Starts an empty module whose objects live in `a` (owned by the caller). */
void ir_module_init(IrModule *m, Arena *a, const char *name)
{
    memset(m, 0, sizeof *m);
    m->arena = a;
    m->name = copy_name(m, name);
}

/* Adds a run-time symbol without a bound and returns its id. */
uint32_t ir_add_sym(IrModule *m, const char *name)
{
    m->syms = grow_for_one(m->arena, m->syms, m->nsyms, sizeof *m->syms);
    m->syms[m->nsyms] = (IrSym){ .name = copy_name(m, name) };
    return m->nsyms++;
}

/* Returns the capacity symbol max(least, floor(ratio * of)), adding it under `name` when
 * no symbol has that definition yet (so equal capacities give equal dims). */
uint32_t ir_add_capacity_sym(IrModule *m, const char *name, Dim of, double ratio, int64_t least)
{
    for (uint32_t i = 0; i < m->nsyms; i++) {
        const IrSym *s = &m->syms[i];
        if (s->is_capacity && dim_eq(s->of, of) && s->ratio == ratio && s->least == least)
            return i;
    }
    uint32_t id = ir_add_sym(m, name);
    IrSym *s = &m->syms[id];
    s->is_capacity = true;
    s->of = of;
    s->ratio = ratio;
    s->least = least;
    return id;
}

/* topk's k: the constant attrs.k, or the run-time attrs.kdim when attrs.k is 0. */
Dim ir_topk_k(const IrOp *op)
{
    return op->attrs.k > 0 ? dim_const(op->attrs.k) : op->attrs.kdim;
}

/* softmax's query offset: attrs.qoff when set (div > 0), else the constant 0. */
Dim ir_softmax_qoff(const IrOp *op)
{
    return op->attrs.qoff.div > 0 ? op->attrs.qoff : dim_const(0);
}

/* Removes @step and its symbol P (both the module's last), recording `why` as the
 * reason there is none. Nothing else refers to them. */
void ir_drop_step(IrModule *m, const char *why)
{
    if (!m->step)
        return;
    assert(m->nfuncs > 1 && m->funcs[m->nfuncs - 1] == m->step && m->past_sym + 1 == m->nsyms);
    m->nfuncs--;
    m->nsyms--;
    m->step = NULL;
    m->no_step = why;
}

/* Copies *w (and its name) into the module; returns its index. */
uint32_t ir_add_weight(IrModule *m, const IrWeight *w)
{
    m->weights = grow_for_one(m->arena, m->weights, m->nweights, sizeof *m->weights);
    m->weights[m->nweights] = *w;
    m->weights[m->nweights].name = copy_name(m, w->name);
    return m->nweights++;
}

/* Appends a function with an empty body region; funcs[0] must be @main. */
IrFunc *ir_add_func(IrModule *m, const char *name, SrcSpan span)
{
    IrFunc *f = ARENA_NEW(m->arena, IrFunc);
    f->name = copy_name(m, name);
    f->span = span;
    f->module = m;
    f->body = ir_region_new(m, f, NULL);
    m->funcs = grow_for_one(m->arena, m->funcs, m->nfuncs, sizeof *m->funcs);
    m->funcs[m->nfuncs++] = f;
    return f;
}

static IrIO *add_io(IrModule *m, IrIO *arr, uint32_t *n, const char *name, IrValue *v)
{
    arr = grow_for_one(m->arena, arr, *n, sizeof *arr);
    arr[(*n)++] = (IrIO){ copy_name(m, name), v };
    return arr;
}

/* Declares @main argument `value` as the model input `name`. */
void ir_add_input(IrModule *m, const char *name, IrValue *value)
{
    m->inputs = add_io(m, m->inputs, &m->ninputs, name, value);
}

/* Declares `value` (returned by @main) as the model output `name`. */
void ir_add_output(IrModule *m, const char *name, IrValue *value)
{
    m->outputs = add_io(m, m->outputs, &m->noutputs, name, value);
}

/* Creates a region; when parent_op is given the region becomes its body. A func's body
 * is made by ir_add_func. */
IrRegion *ir_region_new(IrModule *m, IrFunc *f, IrOp *parent_op)
{
    IrRegion *r = ARENA_NEW(m->arena, IrRegion);
    r->func = f;
    r->parent_op = parent_op;
    if (parent_op)
        parent_op->body = r;
    return r;
}

/* A fresh value with a module-unique id, not yet defined by any op or region. */
IrValue *ir_value_new(IrModule *m, DType dt, const Shape *s)
{
    IrValue *v = ARENA_NEW(m->arena, IrValue);
    v->id = m->next_value_id++;
    v->dtype = dt;
    if (s)
        v->shape = *s;
    return v;
}

/* Appends an argument to region r; `name` may be NULL (anonymous). */
IrValue *ir_region_add_arg(IrModule *m, IrRegion *r, DType dt, const Shape *s, const char *name)
{
    IrValue *v = ir_value_new(m, dt, s);
    v->name = copy_name(m, name);
    v->owner = r;
    v->index = r->nargs;
    r->args = grow_for_one(m->arena, r->args, r->nargs, sizeof *r->args);
    r->args[r->nargs++] = v;
    return v;
}

/* ================================================================= ops ==== */

/* Allocates an op with its operands (uses counted) and fresh results, unlinked. */
static IrOp *op_new(IrModule *m, IrRegion *r, IrOpKind kind, IrValue **ops, uint32_t nops,
                    uint32_t nres, SrcSpan span)
{
    assert((unsigned)kind < IR_OP_COUNT_);
    IrOp *op = ARENA_NEW(m->arena, IrOp);
    op->kind = kind;
    op->span = span;
    op->parent = r;
    op->nops = nops;
    op->operands = ARENA_ARRAY(m->arena, IrValue *, nops);
    for (uint32_t i = 0; i < nops; i++) {
        op->operands[i] = ops[i];
        if (ops[i])
            ops[i]->nuses++;
    }
    op->nres = nres;
    op->results = ARENA_ARRAY(m->arena, IrValue *, nres);
    for (uint32_t i = 0; i < nres; i++) {
        IrValue *v = ir_value_new(m, DT_F32, NULL);
        v->def = op;
        v->index = i;
        op->results[i] = v;
    }
    return op;
}

/* Creates an op at the end of r; see ir.h. */
IrOp *ir_op_append(IrModule *m, IrRegion *r, IrOpKind kind, IrValue **ops, uint32_t nops,
                   uint32_t nres, SrcSpan span)
{
    IrOp *op = op_new(m, r, kind, ops, nops, nres, span);
    op->prev = r->last;
    if (r->last)
        r->last->next = op;
    else
        r->first = op;
    r->last = op;
    return op;
}

/* Creates an op right before `before`, which must be in r. */
IrOp *ir_op_insert_before(IrModule *m, IrRegion *r, IrOp *before, IrOpKind kind,
                          IrValue **ops, uint32_t nops, uint32_t nres, SrcSpan span)
{
    assert(before && before->parent == r);
    IrOp *op = op_new(m, r, kind, ops, nops, nres, span);
    op->next = before;
    op->prev = before->prev;
    if (before->prev)
        before->prev->next = op;
    else
        r->first = op;
    before->prev = op;
    return op;
}

/* Whether op is the return of @main, whose operands the module's outputs mirror. */
static bool is_main_return(const IrOp *op)
{
    if (op->kind != IR_OP_RETURN || !op->parent || op->parent->parent_op || !op->parent->func)
        return false;
    const IrModule *m = op->parent->func->module;
    return m && m->nfuncs > 0 && m->funcs[0] == op->parent->func;
}

/* Sets operand i, moving the use from the old value to v. Keeps IrModule.outputs in
 * step when the op is @main's return. */
void ir_op_set_operand(IrOp *op, uint32_t i, IrValue *v)
{
    assert(i < op->nops);
    IrValue *old = op->operands[i];
    if (old == v)
        return;
    if (old) {
        assert(old->nuses > 0);
        old->nuses--;
    }
    if (v)
        v->nuses++;
    op->operands[i] = v;
    if (is_main_return(op)) {
        IrModule *m = op->parent->func->module;
        if (i < m->noutputs && m->outputs[i].value == old)
            m->outputs[i].value = v;
    }
}

/* Drops the uses held by op's operands and, recursively, by the ops of its body. */
static void drop_uses(IrOp *op)
{
    for (uint32_t i = 0; i < op->nops; i++)
        if (op->operands[i]) {
            assert(op->operands[i]->nuses > 0);
            op->operands[i]->nuses--;
        }
    if (op->body)
        for (IrOp *o = op->body->first; o; o = o->next)
            drop_uses(o);
}

/* Unlinks op from its region and drops the uses it and its body hold. Its results
 * must be unused (asserted). The op's memory stays in the arena. */
void ir_op_erase(IrOp *op)
{
    IrRegion *r = op->parent;
    for (uint32_t i = 0; i < op->nres; i++)
        assert(op->results[i]->nuses == 0 && "erasing an op whose results are used");
    drop_uses(op);
    if (op->prev)
        op->prev->next = op->next;
    else if (r)
        r->first = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else if (r)
        r->last = op->prev;
    op->prev = op->next = NULL;
    op->parent = NULL;
}

/* Pre-order walk: each op, then the ops of its body. */
void ir_region_walk(IrRegion *r, IrOpVisitor fn, void *ctx)
{
    if (!r)
        return;
    for (IrOp *op = r->first; op; op = op->next) {
        fn(op, ctx);
        if (op->body)
            ir_region_walk(op->body, fn, ctx);
    }
}

typedef struct Replace {
    IrValue *from, *to;
} Replace;

static void replace_in_op(IrOp *op, void *ctx)
{
    const Replace *rp = ctx;
    for (uint32_t i = 0; i < op->nops; i++)
        if (op->operands[i] == rp->from)
            ir_op_set_operand(op, i, rp->to);
}

/* Moves every use of `from` in f, nested bodies included, to `to`. */
void ir_replace_uses(IrFunc *f, IrValue *from, IrValue *to)
{
    Replace rp = { from, to };
    ir_region_walk(f->body, replace_in_op, &rp);
}

static void zero_region_uses(IrRegion *r);

static void zero_op_uses(IrOp *op, void *ctx)
{
    (void)ctx;
    for (uint32_t i = 0; i < op->nres; i++)
        op->results[i]->nuses = 0;
    if (op->body)
        zero_region_uses(op->body);  // arguments only; the walk visits the ops
}

static void zero_region_uses(IrRegion *r)
{
    for (uint32_t i = 0; i < r->nargs; i++)
        r->args[i]->nuses = 0;
}

static void count_op_uses(IrOp *op, void *ctx)
{
    (void)ctx;
    for (uint32_t i = 0; i < op->nops; i++)
        if (op->operands[i])
            op->operands[i]->nuses++;
}

/* Sets every nuses from the operand slots of all ops: first zero, then count. */
void ir_recount_uses(IrModule *m)
{
    for (uint32_t f = 0; f < m->nfuncs; f++) {
        zero_region_uses(m->funcs[f]->body);
        ir_region_walk(m->funcs[f]->body, zero_op_uses, NULL);
    }
    for (uint32_t f = 0; f < m->nfuncs; f++)
        ir_region_walk(m->funcs[f]->body, count_op_uses, NULL);
}
