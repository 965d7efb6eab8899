/* ir_print.c - the textual IR dump (--emit=ir, --dump-after) and the value names it
 * uses, which the dot writer and the verifier share. The format is specified in
 * docs/ir.md ("Text format"); keep the two in step. Output is deterministic: names
 * come from a walk in print order, never from pointers or hash order. */
#include "ir.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { LOC_COLUMN = 64 };  // trailing "# file:line:col" comments start here

/* ============================================================== names ==== */

typedef struct NameSlot {
    const char *base;   /* a sanitised user name, or NULL for an empty slot */
    uint32_t    count;  /* values named so far with this base */
} NameSlot;

typedef struct Namer {
    IrNames  *nm;
    NameSlot *slots;    /* open addressing, cap a power of two */
    uint32_t  cap;
    uint32_t  next_anon;
} Namer;

/* User names become identifiers: other bytes turn into '_', a leading digit gets a
 * '_' in front. So the ".N" suffixes added on clashes can never collide. */
static const char *sanitize(Arena *a, const char *s)
{
    size_t n = strlen(s);
    bool digit = s[0] >= '0' && s[0] <= '9';
    char *r = arena_alloc(a, n + 2), *p = r;
    if (digit)
        *p++ = '_';
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        *p++ = ok ? c : '_';
    }
    return r;
}

/* The slot of base name `base` (FNV-1a, linear probing); never full by sizing. */
static NameSlot *slot_for(Namer *nr, const char *base)
{
    uint32_t h = 2166136261u;
    for (const char *p = base; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (uint32_t i = h & (nr->cap - 1);; i = (i + 1) & (nr->cap - 1))
        if (!nr->slots[i].base || strcmp(nr->slots[i].base, base) == 0)
            return &nr->slots[i];
}

/* Gives v its printed name: the next number, or its sanitised user name with a
 * ".N" suffix from the second use of that name on. */
static void name_value(Namer *nr, const IrValue *v)
{
    IrNames *nm = nr->nm;
    if (!v || v->id >= nm->n || nm->name[v->id])
        return;
    if (!v->name || !v->name[0]) {
        nm->name[v->id] = arena_printf(&nm->arena, "%" PRIu32, nr->next_anon++);
        return;
    }
    const char *base = sanitize(&nm->arena, v->name);
    NameSlot *s = slot_for(nr, base);
    s->base = base;
    nm->name[v->id] = s->count == 0 ? base
                                    : arena_printf(&nm->arena, "%s.%" PRIu32, base, s->count);
    s->count++;
}

/* Print order: region arguments, then each op; a region op's body comes before its
 * results, which are defined when the body finishes. */
static void name_region(Namer *nr, const IrRegion *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->nargs; i++)
        name_value(nr, r->args[i]);
    for (const IrOp *op = r->first; op; op = op->next) {
        name_region(nr, op->body);
        for (uint32_t i = 0; i < op->nres; i++)
            name_value(nr, op->results[i]);
    }
}

/* Names every value defined in f (see name_region for the order). The hash table
 * holds one slot per base name, sized for every value of the module. */
void ir_names_init(IrNames *nm, const IrModule *m, const IrFunc *f)
{
    arena_init(&nm->arena);
    nm->n = m->next_value_id;
    nm->name = ARENA_ARRAY(&nm->arena, const char *, nm->n);
    Namer nr = { .nm = nm, .cap = 16 };
    while (nr.cap < 2 * (uint64_t)nm->n)
        nr.cap *= 2;
    nr.slots = ARENA_ARRAY(&nm->arena, NameSlot, nr.cap);
    name_region(&nr, f ? f->body : NULL);
}

/* The name without its sigil; "?" for NULL or for values f does not define. */
const char *ir_names_get(const IrNames *nm, const IrValue *v)
{
    if (!v || v->id >= nm->n || !nm->name[v->id])
        return "?";
    return nm->name[v->id];
}

/* Frees the strings and tables. */
void ir_names_dispose(IrNames *nm)
{
    arena_dispose(&nm->arena);
    nm->name = NULL;
    nm->n = 0;
}

/* ============================================================ printer ==== */

typedef struct Printer {
    Buf              *out;
    const IrModule   *m;
    const IrPrintOpts *o;
    IrNames           names;       /* of the function being printed */
    size_t            line_start;  /* offset in out of the current line */
} Printer;

/* Prints a weight or function name after its sigil, quoted when it holds bytes other
 * than letters, digits and "_.{}-/". */
static void print_symbol(Buf *out, char sigil, const char *name)
{
    buf_putc(out, sigil);
    if (!name)
        name = "";
    bool plain = name[0] != '\0';
    for (const char *p = name; *p; p++)
        if (!strchr("_.{}-/", *p) && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                                        (*p >= '0' && *p <= '9')))
            plain = false;
    if (plain) {
        buf_puts(out, name);
        return;
    }
    buf_putc(out, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_putc(out, '\\');
        buf_putc(out, *p);
    }
    buf_putc(out, '"');
}

static void print_value(Printer *p, const IrValue *v)
{
    buf_putc(p->out, '%');
    buf_puts(p->out, ir_names_get(&p->names, v));
}

static void print_values(Printer *p, IrValue *const *vs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0)
            buf_puts(p->out, ", ");
        print_value(p, vs[i]);
    }
}

static void print_value_type(Printer *p, const IrValue *v)
{
    if (v)
        type_print(p->out, p->m, v->dtype, &v->shape);
    else
        buf_puts(p->out, "?");
}

static void line_begin(Printer *p, int indent)
{
    p->line_start = p->out->len;
    buf_printf(p->out, "%*s", indent, "");
}

/* "  # file:line:col", aligned at LOC_COLUMN, when locations are wanted and known. */
static void print_loc(Printer *p, SrcSpan span)
{
    if (!p->o->locs || !p->o->diag || span.line == 0)
        return;
    size_t col = p->out->len - p->line_start;
    int pad = col + 2 < LOC_COLUMN ? (int)(LOC_COLUMN - col) : 2;
    char where[512];
    span_format(p->o->diag, span, where, sizeof where);
    buf_printf(p->out, "%*s# %s", pad, "", where);
}

/* ---------------------------------------------------------- attributes ---- */

static const char *mask_name(IrMask k)
{
    static const char *const names[IR_MASK_COUNT_] = {
        "none", "causal", "band", "causal_band", "padding",
    };
    return (unsigned)k < IR_MASK_COUNT_ ? names[k] : "?";
}

/* perm holds one entry per axis of the operand. */
static void print_perm(Printer *p, const IrOp *op)
{
    int rank = op->nops > 0 && op->operands[0] ? op->operands[0]->shape.rank
             : op->nres > 0                    ? op->results[0]->shape.rank
                                               : 0;
    buf_puts(p->out, "perm = [");
    for (int i = 0; i < rank; i++)
        buf_printf(p->out, i ? ", %u" : "%u", (unsigned)op->attrs.perm[i]);
    buf_putc(p->out, ']');
}

static void print_attr(Printer *p, const IrOp *op, unsigned bit)
{
    const IrAttrs *a = &op->attrs;
    Buf *out = p->out;
    switch (bit) {
    case IRA_VALUE:
        if (op->nres > 0 && op->results[0]->dtype == DT_I32)  // exact beyond 9 digits
            buf_printf(out, "value = %.0f", a->f);
        else
            buf_printf(out, "value = %.9g", a->f);
        break;
    case IRA_K:
        if (op->kind == IR_OP_TOPK) {   // k may be a run-time dim
            buf_puts(out, "k = ");
            dim_print(out, p->m, ir_topk_k(op));
        } else {
            buf_printf(out, "k = %" PRId64, a->k);
        }
        break;
    case IRA_RENORM:  buf_printf(out, "renorm = %s", a->renorm ? "true" : "false"); break;
    case IRA_AXIS:    buf_printf(out, "axis = %" PRId64, a->axis); break;
    case IRA_KEEPDIM: buf_printf(out, "keepdim = %s", a->keepdim ? "true" : "false"); break;
    case IRA_EPS:     buf_printf(out, "eps = %.9g", a->f); break;
    case IRA_PERM:    print_perm(p, op); break;
    case IRA_MASK:
        buf_printf(out, "mask = %s", mask_name(a->mask));
        if (a->mask == IR_MASK_BAND || a->mask == IR_MASK_CAUSAL_BAND)
            buf_printf(out, "(%" PRId64 ")", a->band);
        break;
    case IRA_RANGE:
        buf_puts(out, "range = [");
        dim_print(out, p->m, a->start);
        buf_puts(out, ", ");
        dim_print(out, p->m, a->end);
        buf_putc(out, ']');
        break;
    case IRA_SLOT:    buf_printf(out, "slot = %u", (unsigned)a->slot); break;
    case IRA_QOFF:
        buf_puts(out, "qoff = ");
        dim_print(out, p->m, ir_softmax_qoff(op));
        break;
    }
}

/* " {name = value, ...}" for the op's attributes in IrAttrBit order; weight, callee,
 * trips and loop kind are printed elsewhere on the line. */
static void print_attrs(Printer *p, const IrOp *op)
{
    unsigned elsewhere = IRA_WEIGHT | IRA_CALLEE | IRA_TRIPS | IRA_LOOP;
    unsigned attrs = ir_op_info[op->kind].attrs & ~elsewhere;
    Dim qoff = ir_softmax_qoff(op);
    if (dim_is_const(qoff) && qoff.c == 0)   // only @step's softmax has one
        attrs &= ~(unsigned)IRA_QOFF;
    if (!attrs)
        return;
    buf_puts(p->out, " {");
    for (unsigned bit = 1, first = 1; bit <= attrs; bit <<= 1) {
        if (!(attrs & bit))
            continue;
        if (!first)
            buf_puts(p->out, ", ");
        first = 0;
        print_attr(p, op, bit);
    }
    buf_putc(p->out, '}');
}

/* ----------------------------------------------------------------- ops ---- */

static void print_region_ops(Printer *p, const IrRegion *r, int indent);

/* " %i in 0..12 stacked until (%x = %1, ...)" */
static void print_loop_header(Printer *p, const IrOp *op)
{
    const IrRegion *b = op->body;
    buf_putc(p->out, ' ');
    print_value(p, b && b->nargs > 0 ? b->args[0] : NULL);
    buf_puts(p->out, " in 0..");
    dim_print(p->out, p->m, op->attrs.trips);
    buf_puts(p->out, op->attrs.loop_kind == IR_LOOP_STACKED ? " stacked" : " shared");
    if (op->attrs.has_until)
        buf_puts(p->out, " until");
    buf_puts(p->out, " (");
    for (uint32_t i = 0; i < op->nops; i++) {
        if (i > 0)
            buf_puts(p->out, ", ");
        print_value(p, b && i + 1 < b->nargs ? b->args[i + 1] : NULL);
        buf_puts(p->out, " = ");
        print_value(p, op->operands[i]);
    }
    buf_putc(p->out, ')');
}

/* " (%e, %h: f32[N, 768])": the moe body's arguments. */
static void print_moe_args(Printer *p, const IrOp *op)
{
    const IrRegion *b = op->body;
    buf_puts(p->out, " (");
    for (uint32_t i = 0; b && i < b->nargs; i++) {
        buf_puts(p->out, i ? ", " : "");
        print_value(p, b->args[i]);
        if (i > 0) {
            buf_puts(p->out, ": ");
            print_value_type(p, b->args[i]);
        }
    }
    buf_putc(p->out, ')');
}

/* Everything between the op name and the attributes. */
static void print_operands(Printer *p, const IrOp *op)
{
    switch (op->kind) {
    case IR_OP_WEIGHT: {
        uint32_t w = op->attrs.weight;
        buf_putc(p->out, ' ');
        print_symbol(p->out, '$', w < p->m->nweights ? p->m->weights[w].name : "?");
        if (op->nops > 0) {
            buf_putc(p->out, '[');
            print_values(p, op->operands, op->nops);
            buf_putc(p->out, ']');
        }
        break;
    }
    case IR_OP_CALL:
        buf_putc(p->out, ' ');
        print_symbol(p->out, '@', op->attrs.callee ? op->attrs.callee->name : "?");
        buf_putc(p->out, '(');
        print_values(p, op->operands, op->nops);
        buf_putc(p->out, ')');
        break;
    case IR_OP_LOOP:
        print_loop_header(p, op);
        break;
    default:
        if (op->nops > 0) {
            buf_putc(p->out, ' ');
            print_values(p, op->operands, op->nops);
        }
    }
}

static void print_result_types(Printer *p, const IrOp *op)
{
    if (op->nres == 0)
        return;
    buf_puts(p->out, " : ");
    for (uint32_t i = 0; i < op->nres; i++) {
        if (i > 0)
            buf_puts(p->out, ", ");
        print_value_type(p, op->results[i]);
    }
}

/* results = name operands {attrs} [region] : types  # loc */
static void print_op(Printer *p, const IrOp *op, int indent)
{
    line_begin(p, indent);
    if (op->nres > 0) {
        print_values(p, op->results, op->nres);
        buf_puts(p->out, " = ");
    }
    bool known = (unsigned)op->kind < IR_OP_COUNT_;
    buf_puts(p->out, known ? ir_op_info[op->kind].name : "?");
    if (!known) {
        buf_putc(p->out, '\n');
        return;
    }
    print_operands(p, op);
    print_attrs(p, op);
    if (op->kind == IR_OP_MOE)
        print_moe_args(p, op);
    if (op->body) {
        buf_puts(p->out, " {");
        print_loc(p, op->span);
        buf_putc(p->out, '\n');
        print_region_ops(p, op->body, indent + 2);
        line_begin(p, indent);
        buf_putc(p->out, '}');
    }
    print_result_types(p, op);
    if (!op->body)
        print_loc(p, op->span);
    buf_putc(p->out, '\n');
}

static void print_region_ops(Printer *p, const IrRegion *r, int indent)
{
    for (const IrOp *op = r->first; op; op = op->next)
        print_op(p, op, indent);
}

/* ------------------------------------------------------- module parts ---- */

/* "-> (logits: f32[T, 50257])" for @main with declared outputs, else "-> (f32[..])". */
static void print_signature_results(Printer *p, const IrFunc *f)
{
    const IrOp *ret = f->body->last;
    bool is_main = p->m->nfuncs > 0 && p->m->funcs[0] == f;
    buf_puts(p->out, " -> (");
    for (uint32_t i = 0; ret && ret->kind == IR_OP_RETURN && i < ret->nops; i++) {
        if (i > 0)
            buf_puts(p->out, ", ");
        if (is_main && ret->nops == p->m->noutputs)
            buf_printf(p->out, "%s: ", p->m->outputs[i].name ? p->m->outputs[i].name : "?");
        print_value_type(p, ret->operands[i]);
    }
    buf_putc(p->out, ')');
}

/* "func @name(%a: type, ...) -> (results) {", the body, "}". */
static void print_func(Printer *p, const IrFunc *f)
{
    ir_names_init(&p->names, p->m, f);
    line_begin(p, 0);
    buf_puts(p->out, "func ");
    print_symbol(p->out, '@', f->name);
    buf_putc(p->out, '(');
    for (uint32_t i = 0; f->body && i < f->body->nargs; i++) {
        if (i > 0)
            buf_puts(p->out, ", ");
        print_value(p, f->body->args[i]);
        buf_puts(p->out, ": ");
        print_value_type(p, f->body->args[i]);
    }
    buf_putc(p->out, ')');
    if (f->body) {
        print_signature_results(p, f);
        buf_puts(p->out, " {");
        print_loc(p, f->span);
        buf_putc(p->out, '\n');
        print_region_ops(p, f->body, 2);
    }
    buf_puts(p->out, "}\n");
    ir_names_dispose(&p->names);
}

/* "syms T <= 1024, N, C = capacity(T, 0.5, 1)" */
static void print_syms(Printer *p)
{
    if (p->m->nsyms == 0)
        return;
    buf_puts(p->out, "syms ");
    for (uint32_t i = 0; i < p->m->nsyms; i++) {
        const IrSym *s = &p->m->syms[i];
        buf_puts(p->out, i ? ", " : "");
        buf_puts(p->out, s->name ? s->name : "?");
        if (s->has_max) {
            buf_puts(p->out, " <= ");
            dim_print(p->out, p->m, s->max);
        }
        if (s->is_capacity) {
            buf_puts(p->out, " = capacity(");
            dim_print(p->out, p->m, s->of);
            buf_printf(p->out, ", %.9g, %" PRId64 ")", s->ratio, s->least);
        }
    }
    buf_putc(p->out, '\n');
}

/* "weight $h.{l}.ln_1.weight [12] : f32[768] = 1" */
static void print_weight(Printer *p, const IrWeight *w)
{
    line_begin(p, 0);
    buf_puts(p->out, "weight ");
    print_symbol(p->out, '$', w->name);
    if (w->nlevels > 0) {
        buf_puts(p->out, " [");
        for (uint32_t i = 0; i < w->nlevels && i < IR_MAX_RANK; i++)
            buf_printf(p->out, i ? ", %" PRId64 : "%" PRId64, w->count[i]);
        buf_putc(p->out, ']');
    }
    buf_puts(p->out, " : ");
    type_print(p->out, p->m, w->dtype, &w->shape);
    if (w->has_init)
        buf_printf(p->out, " = %.9g", w->init);
    print_loc(p, w->span);
    buf_putc(p->out, '\n');
}

/* Writes header, model, syms, weights, then each function (docs/ir.md, "Text
 * format"). A NULL `o` prints without locations or header. */
void ir_print(Buf *out, const IrModule *m, const IrPrintOpts *o)
{
    static const IrPrintOpts plain = { .locs = false };
    Printer p = { .out = out, .m = m, .o = o ? o : &plain };
    if (p.o->header)
        buf_printf(out, "# %s\n", p.o->header);
    if (m->name)
        buf_printf(out, "model %s\n", m->name);
    print_syms(&p);
    for (uint32_t i = 0; i < m->nweights; i++)
        print_weight(&p, &m->weights[i]);
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        if (out->len > 0)
            buf_putc(out, '\n');
        print_func(&p, m->funcs[i]);
    }
    if (m->no_step)
        buf_printf(out, "# no @step: %s\n", m->no_step);
}
