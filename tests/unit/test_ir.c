/* test_ir.c - the IR core: symbolic dimension arithmetic and printing, the builders'
 * use counts, and the shape rule of each op family (ir_infer). */
#include <criterion/criterion.h>
#include <string.h>

#include "ir/ir.h"

static Arena    arena;
static IrModule m;
static Buf      out;
static Dim      T, N;
static IrRegion *region; /* @main's body, made by the first arg() or build() */

static void setup(void)
{
    arena_init(&arena);
    ir_module_init(&m, &arena, "t");
    T = dim_sym(ir_add_sym(&m, "T"));
    N = dim_sym(ir_add_sym(&m, "N"));
    buf_init(&out);
    region = NULL;
}

static void teardown(void)
{
    buf_dispose(&out);
    arena_dispose(&arena);
}

TestSuite(ir, .init = setup, .fini = teardown);

static Shape make_shape(const Dim *dims, int rank)
{
    Shape s = { .rank = (uint8_t)rank };
    memcpy(s.dims, dims, (size_t)rank * sizeof(Dim));
    return s;
}
#define SHAPE(...) make_shape((Dim[]){ __VA_ARGS__ }, sizeof((Dim[]){ __VA_ARGS__ }) / sizeof(Dim))
#define C(n) dim_const(n)

static const char *dim_str(Dim d)
{
    out.len = 0;
    dim_print(&out, &m, d);
    return buf_str(&out);
}

static const char *type_str(const IrValue *v)
{
    out.len = 0;
    type_print(&out, &m, v->dtype, &v->shape);
    return buf_str(&out);
}


static IrValue *arg(DType dt, Shape s)
{
    if (!region)
        region = ir_add_func(&m, "main", (SrcSpan){ 0 })->body;
    return ir_region_add_arg(&m, region, dt, &s, NULL);
}

/* Appends an op to @main (types are set by infer() or by the test). */
static IrOp *build(IrOpKind k, IrValue **ops, uint32_t nops, uint32_t nres)
{
    if (!region)
        region = ir_add_func(&m, "main", (SrcSpan){ 0 })->body;
    return ir_op_append(&m, region, k, ops, nops, nres, (SrcSpan){ 0 });
}

static const char *infer(IrOp *op)
{
    return ir_infer(&m, op);
}

/* ------------------------------------------------------------- dims ---- */

Test(ir, dim_sum_of_equal_symbols_is_a_multiple)
{
    Dim twice, two_t;
    cr_assert(dim_add(T, T, &twice));
    cr_assert(dim_mul(C(2), T, &two_t));
    cr_assert(dim_eq(twice, two_t));
    cr_assert_str_eq(dim_str(twice), "2*T");
}

Test(ir, dim_division_cancels_a_factor)
{
    Dim two_t, back;
    cr_assert(dim_mul(T, C(2), &two_t));
    cr_assert(dim_div(two_t, C(2), &back));
    cr_assert(dim_eq(back, T));
    cr_assert_eq(back.div, 1);
}

Test(ir, dim_constant_division_must_be_exact)
{
    Dim q;
    cr_assert(dim_div(C(768), C(12), &q));
    cr_assert(dim_eq(q, C(64)));
    cr_assert(dim_is_const(q));
    cr_assert_not(dim_div(C(7), C(2), &q));
    cr_assert_not(dim_div(T, C(0), &q), "divisor must be positive");
    cr_assert_not(dim_div(C(8), T, &q), "divisor must be constant");
}

Test(ir, dim_product_of_two_symbols_is_not_representable)
{
    Dim p;
    cr_assert_not(dim_mul(T, T, &p));
    cr_assert_not(dim_mul(T, N, &p));
    Dim t1;
    cr_assert(dim_add(T, C(1), &t1));
    cr_assert_not(dim_mul(t1, N, &p));
    cr_assert(dim_mul(C(0), T, &p));
    cr_assert(dim_eq(p, C(0)), "zero times a symbol is the constant 0");
}

Test(ir, dim_terms_are_sorted_and_zero_terms_dropped)
{
    Dim a, b, d;
    cr_assert(dim_add(N, T, &a));
    cr_assert(dim_add(T, N, &b));
    cr_assert(dim_eq(a, b));
    cr_assert_eq(a.sym[0], 0u);
    cr_assert(dim_sub(a, N, &d));
    cr_assert(dim_eq(d, T));
    cr_assert(dim_sub(T, T, &d));
    cr_assert(dim_eq(d, C(0)));
}

Test(ir, dim_fractions_add_and_reduce)
{
    Dim t1, half, sum, t_half, back;
    cr_assert(dim_add(T, C(1), &t1));
    cr_assert(dim_div(t1, C(2), &half));
    cr_assert_str_eq(dim_str(half), "(T + 1)/2");
    cr_assert(dim_add(half, half, &sum));
    cr_assert(dim_eq(sum, t1));
    cr_assert(dim_div(T, C(2), &t_half));
    cr_assert(dim_add(t_half, t_half, &back));
    cr_assert(dim_eq(back, T));
    Dim bad;
    cr_assert_not(dim_sub(half, t_half, &bad), "1/2 is no integer");
}

Test(ir, dim_too_many_terms_or_overflow_fail)
{
    Dim d = T, s;
    for (uint32_t i = 2; i < 2 + DIM_MAX_TERMS - 1; i++)
        cr_assert(dim_add(d, dim_sym(i), &d));
    cr_assert_not(dim_add(d, dim_sym(40), &s));
    cr_assert_not(dim_add(C(INT64_MAX), C(1), &s));
    cr_assert_not(dim_mul(C(INT64_MAX), C(2), &s));
}

Test(ir, dim_print_uses_tfx_syntax)
{
    Dim d;
    cr_assert_str_eq(dim_str(T), "T");
    cr_assert_str_eq(dim_str(C(768)), "768");
    cr_assert_str_eq(dim_str(C(-3)), "-3");
    cr_assert(dim_mul(T, C(2), &d) && dim_add(d, C(1), &d));
    cr_assert_str_eq(dim_str(d), "2*T + 1");
    cr_assert(dim_div(T, C(4), &d));
    cr_assert_str_eq(dim_str(d), "T/4");
    cr_assert(dim_mul(T, C(3), &d) && dim_div(d, C(4), &d));
    cr_assert_str_eq(dim_str(d), "3*T/4");
    cr_assert(dim_sub(C(5), T, &d));
    cr_assert_str_eq(dim_str(d), "-T + 5");
    cr_assert(dim_sub(T, C(1), &d));
    cr_assert_str_eq(dim_str(d), "T - 1");
    cr_assert(dim_mul(T, C(2), &d) && dim_sub(d, N, &d));
    cr_assert_str_eq(dim_str(d), "2*T - N");
}

Test(ir, type_print_writes_dtype_and_dims)
{
    IrValue *v = arg(DT_BF16, SHAPE(T, C(768)));
    cr_assert_str_eq(type_str(v), "bf16[T, 768]");
    IrValue *s = arg(DT_I32, (Shape){ 0 });
    cr_assert_str_eq(type_str(s), "i32[]");
    cr_assert_str_eq(dtype_name(DT_F16), "f16");
}

/* --------------------------------------------------------- builders ---- */

Test(ir, builders_count_uses_and_set_operand_moves_them)
{
    IrValue *x = arg(DT_F32, SHAPE(T)), *y = arg(DT_F32, SHAPE(T));
    IrOp *add = build(IR_OP_ADD, (IrValue *[]){ x, x }, 2, 1);
    cr_assert_eq(x->nuses, 2);
    ir_op_set_operand(add, 1, y);
    cr_assert_eq(x->nuses, 1);
    cr_assert_eq(y->nuses, 1);
    cr_assert_eq(add->results[0]->def, add);
    cr_assert_eq(add->parent, region);
}

Test(ir, insert_before_links_in_order)
{
    IrValue *x = arg(DT_F32, SHAPE(T));
    IrOp *a = build(IR_OP_NEG, &x, 1, 1);
    IrOp *b = ir_op_insert_before(&m, region, a, IR_OP_EXP, &x, 1, 1, (SrcSpan){ 0 });
    cr_assert_eq(region->first, b);
    cr_assert_eq(b->next, a);
    cr_assert_eq(a->prev, b);
    cr_assert_eq(region->last, a);
}

Test(ir, erase_drops_uses_of_the_op_and_its_body)
{
    IrValue *x = arg(DT_F32, SHAPE(T));
    IrOp *loop = build(IR_OP_LOOP, &x, 1, 1);
    loop->attrs.trips = C(4);
    IrRegion *body = ir_region_new(&m, region->func, loop);
    cr_assert_eq(loop->body, body);
    Shape scalar = { 0 };
    ir_region_add_arg(&m, body, DT_I32, &scalar, "i");
    IrValue *h = ir_region_add_arg(&m, body, DT_F32, &x->shape, "h");
    IrOp *add = ir_op_append(&m, body, IR_OP_ADD, (IrValue *[]){ h, x }, 2, 1, (SrcSpan){ 0 });
    ir_op_append(&m, body, IR_OP_YIELD, add->results, 1, 0, (SrcSpan){ 0 });
    cr_assert_eq(x->nuses, 2);
    ir_op_erase(loop);
    cr_assert_eq(x->nuses, 0);
    cr_assert_null(region->first);
}

Test(ir, replace_uses_reaches_nested_regions_and_outputs)
{
    IrValue *x = arg(DT_F32, SHAPE(T)), *y = arg(DT_F32, SHAPE(T));
    IrOp *loop = build(IR_OP_LOOP, &y, 1, 1);
    IrRegion *body = ir_region_new(&m, region->func, loop);
    Shape scalar = { 0 };
    ir_region_add_arg(&m, body, DT_I32, &scalar, "i");
    IrValue *h = ir_region_add_arg(&m, body, DT_F32, &x->shape, "h");
    IrOp *mul = ir_op_append(&m, body, IR_OP_MUL, (IrValue *[]){ h, x }, 2, 1, (SrcSpan){ 0 });
    ir_op_append(&m, body, IR_OP_YIELD, mul->results, 1, 0, (SrcSpan){ 0 });
    build(IR_OP_RETURN, &x, 1, 0);
    ir_add_output(&m, "out", x);
    ir_replace_uses(region->func, x, y);
    cr_assert_eq(mul->operands[1], y);
    cr_assert_eq(region->last->operands[0], y);
    cr_assert_eq(m.outputs[0].value, y, "the module's output follows the return operand");
    cr_assert_eq(x->nuses, 0);
    cr_assert_eq(y->nuses, 3);
}

Test(ir, recount_uses_restores_counts)
{
    IrValue *x = arg(DT_F32, SHAPE(T));
    IrOp *a = build(IR_OP_ADD, (IrValue *[]){ x, x }, 2, 1);
    build(IR_OP_RETURN, a->results, 1, 0);
    x->nuses = 17;
    a->results[0]->nuses = 0;
    ir_recount_uses(&m);
    cr_assert_eq(x->nuses, 2);
    cr_assert_eq(a->results[0]->nuses, 1);
}

Test(ir, module_arrays_grow_past_their_implicit_capacity)
{
    for (int i = 0; i < 40; i++) {
        IrWeight w = { .name = "w", .dtype = DT_F32 };
        cr_assert_eq(ir_add_weight(&m, &w), (uint32_t)i);
        ir_add_func(&m, "f", (SrcSpan){ 0 });
    }
    cr_assert_eq(m.nweights, 40);
    cr_assert_eq(m.nfuncs, 40);
    cr_assert_str_eq(m.weights[39].name, "w");
    cr_assert_eq(m.funcs[39]->module, &m);
}

/* ----------------------------------------------------- shape rules ---- */

Test(ir, broadcast_aligns_trailing_dims)
{
    Shape a = SHAPE(T, C(1), C(768)), b = SHAPE(C(12), C(768)), r;
    cr_assert(ir_broadcast(&a, &b, &r));
    Shape want = SHAPE(T, C(12), C(768));
    cr_assert(shape_eq(&r, &want));
    Shape two = SHAPE(C(2), C(768)), want2 = SHAPE(T, C(2), C(768));
    cr_assert(ir_broadcast(&a, &two, &r));
    cr_assert(shape_eq(&r, &want2));
    Shape tn = SHAPE(T, C(768)), nn = SHAPE(N, C(768));
    cr_assert_not(ir_broadcast(&tn, &nn, &r), "T and N differ");
}

Test(ir, elementwise_binary_broadcasts_and_checks_dtype)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(768))), *b = arg(DT_F32, SHAPE(C(768)));
    IrValue *i = arg(DT_I32, SHAPE(C(768)));
    IrOp *add = build(IR_OP_ADD, (IrValue *[]){ b, x }, 2, 1);
    cr_assert_null(infer(add));
    cr_assert_str_eq(type_str(add->results[0]), "f32[T, 768]");
    IrOp *lt = build(IR_OP_LT, (IrValue *[]){ x, b }, 2, 1);
    cr_assert_null(infer(lt));
    cr_assert_str_eq(type_str(lt->results[0]), "f32[T, 768]", "comparisons keep the dtype");
    IrOp *bad = build(IR_OP_MUL, (IrValue *[]){ x, i }, 2, 1);
    cr_assert_str_eq(infer(bad), "operand dtypes differ");
    IrValue *y = arg(DT_F32, SHAPE(T, C(64)));
    IrOp *bad2 = build(IR_OP_SUB, (IrValue *[]){ x, y }, 2, 1);
    cr_assert_str_eq(infer(bad2), "operand shapes do not broadcast");
}

Test(ir, where_cast_and_unary_rules)
{
    IrValue *c = arg(DT_F32, SHAPE(T, C(1))), *a = arg(DT_F32, SHAPE(C(8))),
            *b = arg(DT_F32, SHAPE(T, C(8))), *i = arg(DT_I32, SHAPE(T));
    IrOp *w = build(IR_OP_WHERE, (IrValue *[]){ c, a, b }, 3, 1);
    cr_assert_null(infer(w));
    cr_assert_str_eq(type_str(w->results[0]), "f32[T, 8]");
    IrOp *cast = build(IR_OP_CAST, &i, 1, 1);
    cast->attrs.to = DT_F16;
    cr_assert_null(infer(cast));
    cr_assert_str_eq(type_str(cast->results[0]), "f16[T]");
    IrOp *ex = build(IR_OP_EXP, &i, 1, 1);
    cr_assert_str_eq(infer(ex), "operand must be floating-point");
}

Test(ir, matmul_broadcasts_batch_and_checks_inner_dim)
{
    IrValue *q = arg(DT_F32, SHAPE(C(12), T, C(64))), *k = arg(DT_F32, SHAPE(C(64), T));
    IrOp *mm = build(IR_OP_MATMUL, (IrValue *[]){ q, k }, 2, 1);
    cr_assert_null(infer(mm));
    cr_assert_str_eq(type_str(mm->results[0]), "f32[12, T, T]");
    IrValue *w = arg(DT_F32, SHAPE(C(3072), C(768)));
    IrValue *x = arg(DT_F32, SHAPE(T, C(768)));
    IrOp *bad = build(IR_OP_MATMUL, (IrValue *[]){ x, w }, 2, 1);
    cr_assert_str_eq(infer(bad), "inner dimensions differ");
    IrValue *v = arg(DT_F32, SHAPE(C(768)));
    IrOp *rank1 = build(IR_OP_MATMUL, (IrValue *[]){ x, v }, 2, 1);
    cr_assert_str_eq(infer(rank1), "matmul operands need rank 2 or more");
}

Test(ir, softmax_masks_and_padding_lengths)
{
    IrValue *s = arg(DT_F32, SHAPE(C(12), T, T)), *len = arg(DT_I32, SHAPE(C(12)));
    IrOp *sm = build(IR_OP_SOFTMAX, &s, 1, 1);
    sm->attrs.axis = 2;
    sm->attrs.mask = IR_MASK_CAUSAL;
    cr_assert_null(infer(sm));
    sm->attrs.axis = 1;
    cr_assert_str_eq(infer(sm), "a mask needs a [.., query, key] softmax over the last axis");
    sm->attrs.axis = 2;
    sm->attrs.mask = IR_MASK_BAND;
    cr_assert_str_eq(infer(sm), "band width must be positive");
    IrOp *pad = build(IR_OP_SOFTMAX, (IrValue *[]){ s, len }, 2, 1);
    pad->attrs.axis = 2;
    pad->attrs.mask = IR_MASK_PADDING;
    cr_assert_null(infer(pad));
    pad->attrs.mask = IR_MASK_NONE;
    cr_assert_str_eq(infer(pad), "a padding mask takes a lengths operand, other masks none");
}

Test(ir, norms_take_weights_of_the_last_dim)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(768))), *w = arg(DT_F32, SHAPE(C(768))),
            *b = arg(DT_F32, SHAPE(C(768))), *bad = arg(DT_F32, SHAPE(T));
    IrOp *ln = build(IR_OP_LAYERNORM, (IrValue *[]){ x, w, b }, 3, 1);
    cr_assert_null(infer(ln));
    IrOp *rms = build(IR_OP_RMSNORM, (IrValue *[]){ x, bad }, 2, 1);
    cr_assert_str_eq(infer(rms), "scale and bias must match the last dimension");
    IrOp *ln2 = build(IR_OP_LAYERNORM, (IrValue *[]){ x, w }, 2, 1);
    cr_assert_str_eq(infer(ln2), "wrong number of operands");
}

Test(ir, swiglu_halves_the_last_dim)
{
    Dim two_t;
    cr_assert(dim_mul(C(2), T, &two_t));
    IrValue *a = arg(DT_F32, SHAPE(T, C(3072))), *b = arg(DT_F32, SHAPE(C(4), two_t)),
            *odd = arg(DT_F32, SHAPE(T, C(7))), *sym = arg(DT_F32, SHAPE(C(4), T));
    IrOp *s1 = build(IR_OP_SWIGLU, &a, 1, 1), *s2 = build(IR_OP_SWIGLU, &b, 1, 1);
    cr_assert_null(infer(s1));
    cr_assert_str_eq(type_str(s1->results[0]), "f32[T, 1536]");
    cr_assert_null(infer(s2));
    cr_assert_str_eq(type_str(s2->results[0]), "f32[4, T]");
    cr_assert_str_eq(infer(build(IR_OP_SWIGLU, &odd, 1, 1)), "last dimension must be even");
    cr_assert_str_eq(infer(build(IR_OP_SWIGLU, &sym, 1, 1)), "last dimension must be even");
}

Test(ir, reductions_drop_or_keep_the_axis)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(12), C(64)));
    IrOp *sum = build(IR_OP_SUM, &x, 1, 1);
    sum->attrs.axis = 1;
    cr_assert_null(infer(sum));
    cr_assert_str_eq(type_str(sum->results[0]), "f32[T, 64]");
    IrOp *mx = build(IR_OP_REDMAX, &x, 1, 1);
    mx->attrs.axis = 2;
    mx->attrs.keepdim = true;
    cr_assert_null(infer(mx));
    cr_assert_str_eq(type_str(mx->results[0]), "f32[T, 12, 1]");
    mx->attrs.axis = 3;
    cr_assert_str_eq(infer(mx), "axis out of range");
}

Test(ir, topk_gives_values_and_i32_indices)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(8)));
    IrOp *tk = build(IR_OP_TOPK, &x, 1, 2);
    tk->attrs.k = 2;
    cr_assert_null(infer(tk));
    cr_assert_str_eq(type_str(tk->results[0]), "f32[T, 2]");
    cr_assert_str_eq(type_str(tk->results[1]), "i32[T, 2]");
    tk->attrs.k = 9;
    cr_assert_str_eq(infer(tk), "k must be between 1 and the last dimension");
}

Test(ir, transpose_permutes_and_rejects_bad_perms)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(12), C(64)));
    IrOp *t = build(IR_OP_TRANSPOSE, &x, 1, 1);
    memcpy(t->attrs.perm, (uint8_t[]){ 1, 0, 2 }, 3);
    cr_assert_null(infer(t));
    cr_assert_str_eq(type_str(t->results[0]), "f32[12, T, 64]");
    memcpy(t->attrs.perm, (uint8_t[]){ 1, 1, 2 }, 3);
    cr_assert_str_eq(infer(t), "perm is not a permutation of the axes");
}

Test(ir, reshape_compares_symbolic_element_counts)
{
    Dim two_t, t1, half;
    cr_assert(dim_mul(C(2), T, &two_t));
    cr_assert(dim_add(T, C(1), &t1) && dim_div(t1, C(2), &half));
    IrValue *x = arg(DT_F32, SHAPE(T, C(768))), *y = arg(DT_F32, SHAPE(two_t, C(64)));
    IrValue *z = arg(DT_F32, SHAPE(half, C(4)));
    struct { IrValue *in; Shape to; const char *want; } cases[] = {
        { x, SHAPE(T, C(12), C(64)), NULL },
        { x, SHAPE(C(12), T, C(64)), NULL },
        { x, SHAPE(T, C(12), C(32)), "element counts differ" },
        { x, SHAPE(N, C(768)), "element counts differ" },
        { y, SHAPE(T, C(128)), NULL },
        { z, SHAPE(t1, C(2)), NULL },
        { z, SHAPE(T, C(2)), "element counts differ" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        IrOp *r = build(IR_OP_RESHAPE, &cases[i].in, 1, 1);
        r->results[0]->shape = cases[i].to;
        const char *got = infer(r);
        if (cases[i].want)
            cr_assert_str_eq(got ? got : "(null)", cases[i].want, "case %zu", i);
        else
            cr_assert_null(got, "case %zu: %s", i, got);
    }
}

Test(ir, slice_index_gather_scatter)
{
    IrValue *x = arg(DT_F32, SHAPE(C(1024), C(768))), *i = arg(DT_I32, (Shape){ 0 });
    IrValue *tok = arg(DT_I32, SHAPE(T)), *src = arg(DT_F32, SHAPE(T, C(768)));
    IrOp *sl = build(IR_OP_SLICE, &x, 1, 1);
    sl->attrs.start = C(0);
    sl->attrs.end = T;
    cr_assert_null(infer(sl));
    cr_assert_str_eq(type_str(sl->results[0]), "f32[T, 768]");
    sl->attrs.end = C(1025);
    cr_assert_str_eq(infer(sl), "slice range out of bounds");
    IrOp *ix = build(IR_OP_INDEX, (IrValue *[]){ x, i }, 2, 1);
    cr_assert_null(infer(ix));
    cr_assert_str_eq(type_str(ix->results[0]), "f32[768]");
    IrOp *g = build(IR_OP_GATHER, (IrValue *[]){ x, tok }, 2, 1);
    cr_assert_null(infer(g));
    cr_assert_str_eq(type_str(g->results[0]), "f32[T, 768]");
    IrOp *sc = build(IR_OP_SCATTER_ADD, (IrValue *[]){ x, tok, src }, 3, 1);
    cr_assert_null(infer(sc));
    cr_assert_str_eq(type_str(sc->results[0]), "f32[1024, 768]");
    IrOp *bad = build(IR_OP_SCATTER_ADD, (IrValue *[]){ x, tok, x }, 3, 1);
    cr_assert_str_eq(infer(bad), "source must be the base with the axis sized like the indices");
}

Test(ir, concat_adds_and_split_must_add_up)
{
    IrValue *a = arg(DT_F32, SHAPE(T, C(64))), *b = arg(DT_F32, SHAPE(T, C(64)));
    IrOp *cat = build(IR_OP_CONCAT, (IrValue *[]){ a, b, a }, 3, 1);
    cat->attrs.axis = 0;
    cr_assert_null(infer(cat));
    cr_assert_str_eq(type_str(cat->results[0]), "f32[3*T, 64]");
    IrOp *sp = build(IR_OP_SPLIT, &cat->results[0], 1, 2);
    sp->results[0]->shape = SHAPE(T, C(64));
    sp->results[1]->shape = SHAPE(C(0), C(64));
    cr_assert(dim_mul(C(2), T, &sp->results[1]->shape.dims[0]));
    cr_assert_null(infer(sp));
    sp->results[1]->shape.dims[0] = T;
    cr_assert_str_eq(infer(sp), "split sizes do not add up");
}

Test(ir, weight_reads_its_declared_type_per_family_member)
{
    IrWeight w = { .name = "h.{l}.w", .dtype = DT_F32, .shape = SHAPE(C(768)), .nlevels = 1,
                   .count = { 12 } };
    uint32_t wi = ir_add_weight(&m, &w);
    IrValue *l = arg(DT_I32, (Shape){ 0 });
    IrOp *rd = build(IR_OP_WEIGHT, &l, 1, 1);
    rd->attrs.weight = wi;
    cr_assert_null(infer(rd));
    cr_assert_str_eq(type_str(rd->results[0]), "f32[768]");
    IrOp *no_index = build(IR_OP_WEIGHT, NULL, 0, 1);
    no_index->attrs.weight = wi;
    cr_assert_str_eq(infer(no_index), "a weight family needs one index per level");
}

/* Builds `loop %i in 0..4 (%h = x) { yield f(%h) }` and returns it. */
static IrOp *make_loop(IrValue *x, IrOpKind body_op)
{
    IrOp *loop = build(IR_OP_LOOP, &x, 1, 1);
    loop->attrs.trips = C(4);
    IrRegion *b = ir_region_new(&m, region->func, loop);
    ir_region_add_arg(&m, b, DT_I32, &(Shape){ 0 }, "i");
    IrValue *h = ir_region_add_arg(&m, b, x->dtype, &x->shape, "h");
    IrOp *op = ir_op_append(&m, b, body_op, &h, 1, 1, (SrcSpan){ 0 });
    cr_assert_null(ir_infer(&m, op));
    ir_op_append(&m, b, IR_OP_YIELD, op->results, 1, 0, (SrcSpan){ 0 });
    return loop;
}

Test(ir, loop_results_are_the_carried_types)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(768)));
    IrOp *loop = make_loop(x, IR_OP_TANH);
    cr_assert_null(infer(loop));
    cr_assert_str_eq(type_str(loop->results[0]), "f32[T, 768]");
    IrOp *bad = make_loop(x, IR_OP_SWIGLU);
    cr_assert_str_eq(infer(bad), "yielded type differs from the carried value");
}

Test(ir, moe_result_takes_the_body_width)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(768))), *s = arg(DT_F32, SHAPE(T, C(8)));
    IrOp *moe = build(IR_OP_MOE, (IrValue *[]){ x, s }, 2, 1);
    moe->attrs.k = 2;
    IrRegion *b = ir_region_new(&m, region->func, moe);
    ir_region_add_arg(&m, b, DT_I32, &(Shape){ 0 }, "e");
    Shape nd = SHAPE(N, C(768));
    IrValue *h = ir_region_add_arg(&m, b, DT_F32, &nd, "h");
    IrOp *sw = ir_op_append(&m, b, IR_OP_SWIGLU, &h, 1, 1, (SrcSpan){ 0 });
    cr_assert_null(ir_infer(&m, sw));
    cr_assert_null(infer(moe), "no yield yet: pre-set result kept");
    ir_op_append(&m, b, IR_OP_YIELD, sw->results, 1, 0, (SrcSpan){ 0 });
    cr_assert_null(infer(moe));
    cr_assert_str_eq(type_str(moe->results[0]), "f32[T, 384]");
    moe->attrs.k = 9;
    cr_assert_str_eq(infer(moe), "k must be between 1 and the number of experts");
}

Test(ir, call_results_come_from_the_callee_return)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(768)));
    IrFunc *f = ir_add_func(&m, "blk", (SrcSpan){ 0 });
    IrValue *p = ir_region_add_arg(&m, f->body, DT_F32, &x->shape, "x");
    IrOp *sw = ir_op_append(&m, f->body, IR_OP_SWIGLU, &p, 1, 1, (SrcSpan){ 0 });
    cr_assert_null(ir_infer(&m, sw));
    ir_op_append(&m, f->body, IR_OP_RETURN, sw->results, 1, 0, (SrcSpan){ 0 });
    IrOp *call = build(IR_OP_CALL, &x, 1, 1);
    call->attrs.callee = f;
    cr_assert_null(infer(call));
    cr_assert_str_eq(type_str(call->results[0]), "f32[T, 384]");
    IrValue *wrong = arg(DT_F32, SHAPE(T));
    IrOp *bad = build(IR_OP_CALL, &wrong, 1, 1);
    bad->attrs.callee = f;
    cr_assert_str_eq(infer(bad), "argument type differs from the callee's parameter");
}

Test(ir, infer_leaves_results_alone_on_error)
{
    IrValue *x = arg(DT_F32, SHAPE(T)), *y = arg(DT_F32, SHAPE(N));
    IrOp *add = build(IR_OP_ADD, (IrValue *[]){ x, y }, 2, 1);
    add->results[0]->dtype = DT_I32;
    cr_assert_not_null(infer(add));
    cr_assert_eq(add->results[0]->dtype, DT_I32);
    IrOp *two = build(IR_OP_NEG, (IrValue *[]){ x, y }, 2, 1);
    cr_assert_str_eq(infer(two), "wrong number of operands");
}

Test(ir, until_loop_takes_a_per_token_halt_flag)
{
    IrValue *x = arg(DT_F32, SHAPE(T, C(768)));
    IrOp *loop = make_loop(x, IR_OP_TANH);
    loop->attrs.has_until = true;
    IrRegion *b = loop->body;
    IrValue *h = b->args[1];
    IrOp *sum = ir_op_insert_before(&m, b, b->last, IR_OP_SUM, &h, 1, 1, (SrcSpan){ 0 });
    sum->attrs.axis = 1;
    sum->attrs.keepdim = true;
    cr_assert_null(ir_infer(&m, sum));  // f32[T, 1]
    IrValue *next = b->last->operands[0];
    ir_op_erase(b->last);
    IrOp *y = ir_op_append(&m, b, IR_OP_YIELD, (IrValue *[]){ next, sum->results[0] }, 2, 0,
                           (SrcSpan){ 0 });
    cr_assert_null(infer(loop));
    ir_op_set_operand(y, 1, next);  // f32[T, 768]
    cr_assert_str_eq(infer(loop), "halt flag must be [T] or [T, 1]");
    IrValue *other = arg(DT_F32, SHAPE(N));
    ir_op_set_operand(y, 1, other);
    cr_assert_str_eq(infer(loop), "halt flag must match the first dimension of the carried values");
}
