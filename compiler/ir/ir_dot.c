/* ir_dot.c - the IR as a Graphviz digraph (--emit=dot). One cluster per function and
 * one nested cluster per loop or moe body; an ellipse per op, a box per weight read,
 * plain text for arguments and terminators; edges run from a value's producer to each
 * user, and a dashed edge from a body's yield to its loop or moe node. Node ids are
 * handed out in print order and labels use ir_print's names, so output is stable. */
#include "ir.h"

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

typedef struct Dot {
    Buf            *out;
    const IrModule *m;
    IrNames         names;    /* of the function being written */
    uint32_t       *node_of;  /* by IrValue.id: the node producing it, or UINT32_MAX */
    uint32_t        nnodes;   /* ids handed out so far */
    uint32_t        nclusters;
} Dot;

/* Appends s to out with the characters a DOT string cannot hold escaped. */
static void put_escaped(Buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_putc(out, '\\');
        if (*s == '\n')
            buf_puts(out, "\\n");
        else
            buf_putc(out, *s);
    }
}

/* Emits `nID [label="...", shape=...];` and returns ID. */
static uint32_t emit_node(Dot *d, int indent, const char *label, const char *shape)
{
    uint32_t id = d->nnodes++;
    buf_printf(d->out, "%*sn%" PRIu32 " [label=\"", indent, "", id);
    put_escaped(d->out, label);
    buf_printf(d->out, "\", shape=%s];\n", shape);
    return id;
}

static void set_producer(Dot *d, const IrValue *v, uint32_t node)
{
    if (v && v->id < d->names.n)
        d->node_of[v->id] = node;
}

static void emit_edges(Dot *d, int indent, const IrOp *op, uint32_t node)
{
    for (uint32_t i = 0; i < op->nops; i++) {
        const IrValue *v = op->operands[i];
        if (v && v->id < d->names.n && d->node_of[v->id] != UINT32_MAX)
            buf_printf(d->out, "%*sn%" PRIu32 " -> n%" PRIu32 ";\n", indent, "",
                       d->node_of[v->id], node);
    }
}

/* Region arguments as plain-text nodes "%name\ntype". */
static void emit_args(Dot *d, int indent, const IrRegion *r)
{
    Buf label;
    buf_init(&label);
    for (uint32_t i = 0; i < r->nargs; i++) {
        const IrValue *v = r->args[i];
        label.len = 0;
        buf_printf(&label, "%%%s\n", ir_names_get(&d->names, v));
        type_print(&label, d->m, v->dtype, &v->shape);
        set_producer(d, v, emit_node(d, indent, buf_str(&label), "plaintext"));
    }
    buf_dispose(&label);
}

/* "%q, %k = split\nf32[T, 64], f32[T, 64]" or "$wte\nf32[50257, 768]" for weights. */
static void op_label(Dot *d, const IrOp *op, Buf *label)
{
    for (uint32_t i = 0; i < op->nres; i++)
        buf_printf(label, "%s%%%s", i ? ", " : "", ir_names_get(&d->names, op->results[i]));
    if (op->nres > 0)
        buf_puts(label, " = ");
    if (op->kind == IR_OP_WEIGHT && op->attrs.weight < d->m->nweights)
        buf_printf(label, "$%s", d->m->weights[op->attrs.weight].name);
    else
        buf_puts(label, (unsigned)op->kind < IR_OP_COUNT_ ? ir_op_info[op->kind].name : "?");
    for (uint32_t i = 0; i < op->nres; i++) {
        buf_puts(label, i ? ", " : "\n");
        type_print(label, d->m, op->results[i]->dtype, &op->results[i]->shape);
    }
}

static uint32_t emit_region(Dot *d, int indent, const IrRegion *r);

/* A loop or moe body as a nested cluster; returns the node of its terminator. */
static uint32_t emit_body_cluster(Dot *d, int indent, const IrOp *op)
{
    buf_printf(d->out, "%*ssubgraph \"cluster_%" PRIu32 "\" {\n", indent, "", d->nclusters++);
    buf_printf(d->out, "%*slabel=\"", indent + 2, "");
    if (op->kind == IR_OP_LOOP) {
        Buf trips;
        buf_init(&trips);
        dim_print(&trips, d->m, op->attrs.trips);
        buf_printf(d->out, "loop 0..%s %s%s", buf_str(&trips),
                   op->attrs.loop_kind == IR_LOOP_STACKED ? "stacked" : "shared",
                   op->attrs.has_until ? " until" : "");
        buf_dispose(&trips);
    } else {
        buf_printf(d->out, "moe k=%" PRId64, op->attrs.k);
    }
    buf_puts(d->out, "\";\n");
    uint32_t term = emit_region(d, indent + 2, op->body);
    buf_printf(d->out, "%*s}\n", indent, "");
    return term;
}

/* Emits op (after its body cluster, if any) and its operand edges; returns its node. */
static uint32_t emit_op(Dot *d, int indent, const IrOp *op)
{
    uint32_t term = op->body ? emit_body_cluster(d, indent, op) : UINT32_MAX;
    Buf label;
    buf_init(&label);
    op_label(d, op, &label);
    const char *shape = op->kind == IR_OP_WEIGHT ? "box"
                      : (unsigned)op->kind < IR_OP_COUNT_ &&
                                (ir_op_info[op->kind].traits & IRT_TERMINATOR)
                          ? "plaintext"
                          : "ellipse";
    uint32_t node = emit_node(d, indent, buf_str(&label), shape);
    buf_dispose(&label);
    emit_edges(d, indent, op, node);
    if (term != UINT32_MAX)
        buf_printf(d->out, "%*sn%" PRIu32 " -> n%" PRIu32 " [style=dashed, constraint=false];\n",
                   indent, "", term, node);
    for (uint32_t i = 0; i < op->nres; i++)
        set_producer(d, op->results[i], node);
    return node;
}

/* Emits r's arguments and ops; returns the node of the last op (its terminator). */
static uint32_t emit_region(Dot *d, int indent, const IrRegion *r)
{
    uint32_t last = UINT32_MAX;
    if (!r)
        return last;
    emit_args(d, indent, r);
    for (const IrOp *op = r->first; op; op = op->next)
        last = emit_op(d, indent, op);
    return last;
}

static void emit_func(Dot *d, const IrFunc *f)
{
    ir_names_init(&d->names, d->m, f);
    d->node_of = ARENA_ARRAY(&d->names.arena, uint32_t, d->names.n);
    memset(d->node_of, 0xff, d->names.n * sizeof *d->node_of);
    buf_printf(d->out, "  subgraph \"cluster_%" PRIu32 "\" {\n    label=\"@", d->nclusters++);
    put_escaped(d->out, f->name ? f->name : "?");
    buf_puts(d->out, "\";\n");
    emit_region(d, 4, f->body);
    buf_puts(d->out, "  }\n");
    ir_names_dispose(&d->names);
}

/* The whole module as one digraph; see the banner for the drawing rules. */
void ir_print_dot(Buf *out, const IrModule *m)
{
    Dot d = { .out = out, .m = m };
    buf_puts(out, "digraph \"");
    put_escaped(out, m->name ? m->name : "tfxc");
    buf_puts(out, "\" {\n  node [fontname=\"monospace\"];\n");
    for (uint32_t i = 0; i < m->nfuncs; i++)
        emit_func(&d, m->funcs[i]);
    buf_puts(out, "}\n");
}
