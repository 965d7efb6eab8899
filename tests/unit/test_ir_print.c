/* test_ir_print.c - the textual dump (ir_print), its value names, the Graphviz writer
 * and the generated op table in docs/ir.md. Expected texts are the format of
 * docs/ir.md, "Text format"; a change here is a change of that spec. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/diag.h"
#include "ir/ir.h"

static Arena      arena;
static IrModule   m;
static Buf        out;
static DiagEngine diag;
static Dim        T;

static void setup(void)
{
    arena_init(&arena);
    ir_module_init(&m, &arena, "gpt2");
    T = dim_sym(ir_add_sym(&m, "T"));
    m.syms[0].has_max = true;
    m.syms[0].max = dim_const(1024);
    buf_init(&out);
    diag_init(&diag, NULL);
    diag_add_file(&diag, "examples/gpt2.tfx", "", 0);
}

static void teardown(void)
{
    diag_dispose(&diag);
    buf_dispose(&out);
    arena_dispose(&arena);
}

TestSuite(ir_print, .init = setup, .fini = teardown);

static Shape make_shape(const Dim *dims, int rank)
{
    Shape s = { .rank = (uint8_t)rank };
    memcpy(s.dims, dims, (size_t)rank * sizeof(Dim));
    return s;
}
#define SHAPE(...) make_shape((Dim[]){ __VA_ARGS__ }, sizeof((Dim[]){ __VA_ARGS__ }) / sizeof(Dim))
#define C(n) dim_const(n)

static SrcSpan at(uint32_t line, uint32_t col)
{
    return (SrcSpan){ .file = 0, .line = line, .col = col };
}

/* Appends op to r, runs its shape rule and checks it passed. */
static IrOp *add_op(IrRegion *r, IrOpKind k, IrValue **ops, uint32_t nops, uint32_t nres,
                    SrcSpan span)
{
    IrOp *op = ir_op_append(&m, r, k, ops, nops, nres, span);
    return op;
}

static IrValue *inferred(IrOp *op)
{
    const char *e = ir_infer(&m, op);
    cr_assert_null(e, "%s: %s", ir_op_info[op->kind].name, e);
    return op->nres ? op->results[0] : NULL;
}

static IrValue *weight_read(IrRegion *r, uint32_t w, IrValue **idx, uint32_t n, SrcSpan s)
{
    IrOp *op = add_op(r, IR_OP_WEIGHT, idx, n, 1, s);
    op->attrs.weight = w;
    return inferred(op);
}

/* A small GPT-2: embedding, a stacked loop with a per-layer norm weight, tied head. */
static void build_gpt2(void)
{
    IrWeight wte = { .name = "transformer.wte.weight", .dtype = DT_F32,
                     .shape = SHAPE(C(50257), C(768)) };
    IrWeight ln = { .name = "transformer.h.{l}.ln_1.weight", .dtype = DT_F32,
                    .shape = SHAPE(C(768)), .nlevels = 1, .count = { 12 }, .has_init = true,
                    .init = 1.0 };
    uint32_t w_wte = ir_add_weight(&m, &wte), w_ln = ir_add_weight(&m, &ln);
    IrFunc *f = ir_add_func(&m, "main", at(3, 1));
    Shape toks = SHAPE(T);
    IrValue *tokens = ir_region_add_arg(&m, f->body, DT_I32, &toks, "tokens");
    ir_add_input(&m, "tokens", tokens);

    IrValue *e = weight_read(f->body, w_wte, NULL, 0, at(4, 5));
    IrOp *g = add_op(f->body, IR_OP_GATHER, (IrValue *[]){ e, tokens }, 2, 1, at(7, 9));
    IrValue *x0 = inferred(g);

    IrOp *loop = add_op(f->body, IR_OP_LOOP, &x0, 1, 1, at(8, 5));
    loop->attrs.trips = C(12);
    loop->attrs.loop_kind = IR_LOOP_STACKED;
    IrRegion *b = ir_region_new(&m, f, loop);
    IrValue *l = ir_region_add_arg(&m, b, DT_I32, &(Shape){ 0 }, "l");
    IrValue *x = ir_region_add_arg(&m, b, DT_F32, &x0->shape, "x");
    IrValue *w = weight_read(b, w_ln, &l, 1, at(9, 13));
    IrOp *norm = add_op(b, IR_OP_LAYERNORM, &x, 1, 1, at(9, 13));
    norm->attrs.f = 1e-5;
    IrValue *n = inferred(norm);
    IrValue *scaled = inferred(add_op(b, IR_OP_MUL, (IrValue *[]){ n, w }, 2, 1, at(9, 13)));
    IrValue *next = inferred(add_op(b, IR_OP_ADD, (IrValue *[]){ x, scaled }, 2, 1, at(9, 11)));
    next->name = "x";
    add_op(b, IR_OP_YIELD, &next, 1, 0, at(10, 5));
    IrValue *xl = inferred(loop);
    xl->name = "x";

    IrOp *tr = add_op(f->body, IR_OP_TRANSPOSE, &e, 1, 1, at(11, 40));
    tr->attrs.perm[0] = 1;
    IrValue *wt = inferred(tr);
    IrValue *logits = inferred(add_op(f->body, IR_OP_MATMUL, (IrValue *[]){ xl, wt }, 2, 1,
                                      at(11, 20)));
    logits->name = "logits";
    add_op(f->body, IR_OP_RETURN, &logits, 1, 0, at(11, 5));
    ir_add_output(&m, "logits", logits);
}

static const char *print(bool locs, const char *header)
{
    IrPrintOpts o = { .locs = locs, .diag = &diag, .header = header };
    out.len = 0;
    ir_print(&out, &m, &o);
    return buf_str(&out);
}

Test(ir_print, module_without_locations)
{
    build_gpt2();
    cr_assert_eq(ir_verify(&m, NULL), 0);
    cr_assert_str_eq(print(false, "tfxc ir: examples/gpt2.tfx"),
        "# tfxc ir: examples/gpt2.tfx\n"
        "model gpt2\n"
        "syms T <= 1024\n"
        "weight $transformer.wte.weight : f32[50257, 768]\n"
        "weight $transformer.h.{l}.ln_1.weight [12] : f32[768] = 1\n"
        "\n"
        "func @main(%tokens: i32[T]) -> (logits: f32[T, 50257]) {\n"
        "  %0 = weight $transformer.wte.weight : f32[50257, 768]\n"
        "  %1 = gather %0, %tokens {axis = 0} : f32[T, 768]\n"
        "  %x.2 = loop %l in 0..12 stacked (%x = %1) {\n"
        "    %2 = weight $transformer.h.{l}.ln_1.weight[%l] : f32[768]\n"
        "    %3 = layernorm %x {eps = 1e-05} : f32[T, 768]\n"
        "    %4 = mul %3, %2 : f32[T, 768]\n"
        "    %x.1 = add %x, %4 : f32[T, 768]\n"
        "    yield %x.1\n"
        "  } : f32[T, 768]\n"
        "  %5 = transpose %0 {perm = [1, 0]} : f32[768, 50257]\n"
        "  %logits = matmul %x.2, %5 : f32[T, 50257]\n"
        "  return %logits\n"
        "}\n");
}

Test(ir_print, module_with_locations_aligns_comments)
{
    build_gpt2();
    const char *text = print(true, NULL);
    cr_assert_str_eq(text,
        "model gpt2\n"
        "syms T <= 1024\n"
        "weight $transformer.wte.weight : f32[50257, 768]\n"
        "weight $transformer.h.{l}.ln_1.weight [12] : f32[768] = 1\n"
        "\n"
        "func @main(%tokens: i32[T]) -> (logits: f32[T, 50257]) {        # examples/gpt2.tfx:3:1\n"
        "  %0 = weight $transformer.wte.weight : f32[50257, 768]         # examples/gpt2.tfx:4:5\n"
        "  %1 = gather %0, %tokens {axis = 0} : f32[T, 768]              # examples/gpt2.tfx:7:9\n"
        "  %x.2 = loop %l in 0..12 stacked (%x = %1) {                   # examples/gpt2.tfx:8:5\n"
        "    %2 = weight $transformer.h.{l}.ln_1.weight[%l] : f32[768]   # examples/gpt2.tfx:9:13\n"
        "    %3 = layernorm %x {eps = 1e-05} : f32[T, 768]               # examples/gpt2.tfx:9:13\n"
        "    %4 = mul %3, %2 : f32[T, 768]                               # examples/gpt2.tfx:9:13\n"
        "    %x.1 = add %x, %4 : f32[T, 768]                             # examples/gpt2.tfx:9:11\n"
        "    yield %x.1                                                  # examples/gpt2.tfx:10:5\n"
        "  } : f32[T, 768]\n"
        "  %5 = transpose %0 {perm = [1, 0]} : f32[768, 50257]           # examples/gpt2.tfx:11:40\n"
        "  %logits = matmul %x.2, %5 : f32[T, 50257]                     # examples/gpt2.tfx:11:20\n"
        "  return %logits                                                # examples/gpt2.tfx:11:5\n"
        "}\n");
}

Test(ir_print, locations_need_a_diag_engine_and_a_line)
{
    IrFunc *f = ir_add_func(&m, "main", at(0, 0));
    IrValue *c = inferred(add_op(f->body, IR_OP_CONST, NULL, 0, 1, at(0, 0)));
    IrOp *neg = add_op(f->body, IR_OP_NEG, &c, 1, 1, at(2, 3));
    inferred(neg);
    add_op(f->body, IR_OP_RETURN, neg->results, 1, 0, at(0, 0));
    IrPrintOpts no_diag = { .locs = true };
    ir_print(&out, &m, &no_diag);
    const char *want =
        "model gpt2\n"
        "syms T <= 1024\n"
        "\n"
        "func @main() -> (f32[]) {\n"
        "  %0 = const {value = 0} : f32[]\n"
        "  %1 = neg %0 : f32[]\n"
        "  return %1\n"
        "}\n";
    cr_assert_str_eq(buf_str(&out), want);
    cr_assert(strstr(print(true, NULL), "%1 = neg %0 : f32[]") != NULL);
    cr_assert(strstr(print(true, NULL), "# examples/gpt2.tfx:2:3\n") != NULL);
    cr_assert(strstr(print(true, NULL), "%0 = const {value = 0} : f32[]\n") != NULL,
              "a span on line 0 has no comment");
}

Test(ir_print, user_names_are_kept_sanitised_and_suffixed)
{
    IrFunc *f = ir_add_func(&m, "main", at(0, 0));
    Shape s = SHAPE(T);
    IrValue *q = ir_region_add_arg(&m, f->body, DT_F32, &s, "q");
    IrValue *a = inferred(add_op(f->body, IR_OP_EXP, &q, 1, 1, at(0, 0)));
    IrValue *b = inferred(add_op(f->body, IR_OP_EXP, &a, 1, 1, at(0, 0)));
    IrValue *c = inferred(add_op(f->body, IR_OP_EXP, &b, 1, 1, at(0, 0)));
    IrValue *d = inferred(add_op(f->body, IR_OP_EXP, &c, 1, 1, at(0, 0)));
    a->name = "q";
    b->name = "attn out";
    c->name = "3d";
    add_op(f->body, IR_OP_RETURN, &d, 1, 0, at(0, 0));
    IrNames nm;
    ir_names_init(&nm, &m, f);
    cr_assert_str_eq(ir_names_get(&nm, q), "q");
    cr_assert_str_eq(ir_names_get(&nm, a), "q.1");
    cr_assert_str_eq(ir_names_get(&nm, b), "attn_out");
    cr_assert_str_eq(ir_names_get(&nm, c), "_3d");
    cr_assert_str_eq(ir_names_get(&nm, d), "0");
    cr_assert_str_eq(ir_names_get(&nm, NULL), "?");
    ir_names_dispose(&nm);
}

Test(ir_print, attributes_print_in_table_order)
{
    IrFunc *f = ir_add_func(&m, "main", at(0, 0));
    Shape s = SHAPE(C(12), T, T);
    IrValue *x = ir_region_add_arg(&m, f->body, DT_F32, &s, NULL);
    IrOp *sm = add_op(f->body, IR_OP_SOFTMAX, &x, 1, 1, at(0, 0));
    sm->attrs.axis = 2;
    sm->attrs.mask = IR_MASK_CAUSAL_BAND;
    sm->attrs.band = 5;
    IrOp *sum = add_op(f->body, IR_OP_SUM, &x, 1, 1, at(0, 0));
    sum->attrs.axis = 1;
    sum->attrs.keepdim = true;
    IrOp *sl = add_op(f->body, IR_OP_SLICE, &x, 1, 1, at(0, 0));
    sl->attrs.axis = 1;
    sl->attrs.start = C(1);
    sl->attrs.end = T;
    IrOp *tk = add_op(f->body, IR_OP_TOPK, &x, 1, 2, at(0, 0));
    tk->attrs.k = 2;
    IrOp *c = add_op(f->body, IR_OP_CONST, NULL, 0, 1, at(0, 0));
    c->attrs.f = 0.1;
    IrOp *cast = add_op(f->body, IR_OP_CAST, &x, 1, 1, at(0, 0));
    cast->attrs.to = DT_BF16;
    IrOp *ops[] = { sm, sum, sl, tk, c, cast };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        inferred(ops[i]);
    add_op(f->body, IR_OP_RETURN, sum->results, 1, 0, at(0, 0));
    cr_assert_str_eq(print(false, NULL),
        "model gpt2\n"
        "syms T <= 1024\n"
        "\n"
        "func @main(%0: f32[12, T, T]) -> (f32[12, 1, T]) {\n"
        "  %1 = softmax %0 {axis = 2, mask = causal_band(5)} : f32[12, T, T]\n"
        "  %2 = sum %0 {axis = 1, keepdim = true} : f32[12, 1, T]\n"
        "  %3 = slice %0 {axis = 1, range = [1, T]} : f32[12, T - 1, T]\n"
        "  %4, %5 = topk %0 {k = 2} : f32[12, T, 2], i32[12, T, 2]\n"
        "  %6 = const {value = 0.1} : f32[]\n"
        "  %7 = cast %0 : bf16[12, T, T]\n"
        "  return %2\n"
        "}\n");
}

Test(ir_print, moe_and_until_loops_show_their_headers)
{
    uint32_t nsym = ir_add_sym(&m, "N");
    IrFunc *f = ir_add_func(&m, "main", at(0, 0));
    Shape xs = SHAPE(T, C(768)), ss = SHAPE(T, C(8)), hs = SHAPE(dim_sym(nsym), C(768));
    IrValue *x = ir_region_add_arg(&m, f->body, DT_F32, &xs, "x");
    IrValue *sc = ir_region_add_arg(&m, f->body, DT_F32, &ss, "s");
    IrOp *moe = add_op(f->body, IR_OP_MOE, (IrValue *[]){ x, sc }, 2, 1, at(0, 0));
    moe->attrs.k = 2;
    IrRegion *b = ir_region_new(&m, f, moe);
    ir_region_add_arg(&m, b, DT_I32, &(Shape){ 0 }, "e");
    IrValue *h = ir_region_add_arg(&m, b, DT_F32, &hs, "h");
    IrValue *r = inferred(add_op(b, IR_OP_RELU, &h, 1, 1, at(0, 0)));
    add_op(b, IR_OP_YIELD, &r, 1, 0, at(0, 0));
    IrValue *y = inferred(moe);
    y->name = "y";

    IrOp *loop = add_op(f->body, IR_OP_LOOP, &y, 1, 1, at(0, 0));
    loop->attrs.trips = C(8);
    loop->attrs.has_until = true;
    IrRegion *lb = ir_region_new(&m, f, loop);
    ir_region_add_arg(&m, lb, DT_I32, &(Shape){ 0 }, "i");
    IrValue *z = ir_region_add_arg(&m, lb, DT_F32, &xs, "z");
    IrOp *halt = add_op(lb, IR_OP_SUM, &z, 1, 1, at(0, 0));
    halt->attrs.axis = 1;
    add_op(lb, IR_OP_YIELD, (IrValue *[]){ z, inferred(halt) }, 2, 0, at(0, 0));
    IrValue *out_v = inferred(loop);
    add_op(f->body, IR_OP_RETURN, &out_v, 1, 0, at(0, 0));
    cr_assert_eq(ir_verify(&m, NULL), 0);
    cr_assert_str_eq(print(false, NULL),
        "model gpt2\n"
        "syms T <= 1024, N\n"
        "\n"
        "func @main(%x: f32[T, 768], %s: f32[T, 8]) -> (f32[T, 768]) {\n"
        "  %y = moe %x, %s {k = 2, renorm = false} (%e, %h: f32[N, 768]) {\n"
        "    %0 = relu %h : f32[N, 768]\n"
        "    yield %0\n"
        "  } : f32[T, 768]\n"
        "  %2 = loop %i in 0..8 shared until (%z = %y) {\n"
        "    %1 = sum %z {axis = 1, keepdim = false} : f32[T]\n"
        "    yield %z, %1\n"
        "  } : f32[T, 768]\n"
        "  return %2\n"
        "}\n");
}

Test(ir_print, odd_weight_and_func_names_are_quoted)
{
    IrWeight w = { .name = "model \"v2\".w", .dtype = DT_F16, .shape = SHAPE(C(4)) };
    ir_add_weight(&m, &w);
    IrFunc *f = ir_add_func(&m, "main", at(0, 0));
    add_op(f->body, IR_OP_RETURN, NULL, 0, 0, at(0, 0));
    ir_add_func(&m, "blk 1", at(0, 0));
    add_op(m.funcs[1]->body, IR_OP_RETURN, NULL, 0, 0, at(0, 0));
    const char *text = print(false, NULL);
    cr_assert(strstr(text, "weight $\"model \\\"v2\\\".w\" : f16[4]\n") != NULL, "%s", text);
    cr_assert(strstr(text, "\n\nfunc @\"blk 1\"() -> () {\n  return\n}\n") != NULL, "%s", text);
}

Test(ir_print, dot_is_a_deterministic_digraph)
{
    build_gpt2();
    Buf again;
    buf_init(&again);
    ir_print_dot(&out, &m);
    ir_print_dot(&again, &m);
    cr_assert_str_eq(buf_str(&out), buf_str(&again));
    buf_dispose(&again);
    const char *dot = buf_str(&out);
    cr_assert(strncmp(dot, "digraph \"gpt2\" {\n", 17) == 0);
    cr_assert(strstr(dot, "  subgraph \"cluster_0\" {\n    label=\"@main\";\n") != NULL);
    cr_assert(strstr(dot, "    subgraph \"cluster_1\" {\n      label=\"loop 0..12 stacked\";\n"));
    cr_assert(strstr(dot, "n1 [label=\"%0 = $transformer.wte.weight\\nf32[50257, 768]\", "
                          "shape=box];\n"));
    cr_assert(strstr(dot, "n9 -> n10 [style=dashed, constraint=false];\n"), "yield feeds the loop");
    cr_assert(strstr(dot, "n10 -> n12;\n"), "the loop result feeds the matmul");
    cr_assert_str_eq(dot + strlen(dot) - 6, "  }\n}\n");
}

Test(ir_print, ops_doc_is_up_to_date)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sh '%s/scripts/gen_ir_ops_doc.sh' --check", TFX_SOURCE_DIR);
    cr_assert_eq(system(cmd), 0, "docs/ir.md is stale: run scripts/gen_ir_ops_doc.sh");
}
