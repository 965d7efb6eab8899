/* test_pass_simplify.c - pass "simplify" (folding, identities, CSE across region
 * nesting, DCE of ops and dead loops, idempotence) and the pipeline that runs the
 * passes (--dump-after sections, verification after each pass). */
#include <criterion/criterion.h>
#include <string.h>

#include "passes/pass.h"

static Arena    arena;
static IrModule m;
static Buf      out;
static PassCtx  pc;
static Shape    tx;      /* f32[T, 8] */
static IrFunc  *f;       /* @main */
static IrValue *x;       /* its argument %x: f32[T, 8] */

static void setup(void)
{
    arena_init(&arena);
    ir_module_init(&m, &arena, NULL);
    Dim T = dim_sym(ir_add_sym(&m, "T"));
    tx = (Shape){ .rank = 2, .dims = { T, dim_const(8) } };
    buf_init(&out);
    pc = (PassCtx){ .opt_level = 1 };
    f = ir_add_func(&m, "main", (SrcSpan){ 0 });
    x = ir_region_add_arg(&m, f->body, DT_F32, &tx, "x");
}

static void teardown(void)
{
    buf_dispose(&out);
    arena_dispose(&arena);
}

TestSuite(pass_simplify, .init = setup, .fini = teardown);

static IrOp *op(IrRegion *r, IrOpKind k, IrValue **ops, uint32_t nops)
{
    IrOp *o = ir_op_append(&m, r, k, ops, nops, 1, (SrcSpan){ 0 });
    cr_assert_null(ir_infer(&m, o), "%s", ir_op_info[k].name);
    return o;
}

static IrValue *op1(IrRegion *r, IrOpKind k, IrValue **ops, uint32_t nops)
{
    return op(r, k, ops, nops)->results[0];
}

static IrValue *fill(IrRegion *r, DType dt, Shape s, double v)
{
    IrOp *c = ir_op_append(&m, r, IR_OP_CONST, NULL, 0, 1, (SrcSpan){ 0 });
    c->attrs.f = v;
    c->results[0]->dtype = dt;
    c->results[0]->shape = s;
    return c->results[0];
}

static void ret(IrValue *v)
{
    ir_op_append(&m, f->body, IR_OP_RETURN, &v, 1, 0, (SrcSpan){ 0 });
}

static const char *print(void)
{
    out.len = 0;
    ir_print(&out, &m, NULL);
    return buf_str(&out);
}

/* Runs simplify, checks the module verifies, and that a second run changes nothing. */
static void simplify_twice(void)
{
    cr_assert(pass_simplify(&m, &pc));
    Buf errs;
    buf_init(&errs);
    cr_assert_eq(ir_verify(&m, &errs), 0, "%s", buf_str(&errs));
    buf_dispose(&errs);
    char *once = arena_strdup(&arena, print());
    cr_assert_not(pass_simplify(&m, &pc), "second run changed something");
    cr_assert_str_eq(print(), once);
}

#define HEAD "syms T\n\nfunc @main(%x: f32[T, 8]) -> "

Test(pass_simplify, constants_fold_through_a_chain)
{
    Shape s = { 0 };
    IrValue *two = fill(f->body, DT_F32, s, 2), *three = fill(f->body, DT_F32, tx, 3);
    IrValue *sum = op1(f->body, IR_OP_ADD, (IrValue *[]){ two, three }, 2);  // 5, [T, 8]
    IrValue *sq = op1(f->body, IR_OP_SQRT, &sum, 1);
    ret(op1(f->body, IR_OP_MUL, (IrValue *[]){ sq, x }, 2));
    simplify_twice();
    cr_assert_str_eq(print(),
        HEAD "(f32[T, 8]) {\n"
        "  %0 = const {value = 2.23606801} : f32[T, 8]\n"
        "  %1 = mul %0, %x : f32[T, 8]\n"
        "  return %1\n"
        "}\n");
}

Test(pass_simplify, integer_folding_stays_in_range_and_skips_division)
{
    Shape s = { 0 };
    IrValue *big = fill(f->body, DT_I32, s, 2147483647), *one = fill(f->body, DT_I32, s, 1);
    IrValue *two = fill(f->body, DT_I32, s, 2);
    IrValue *over = op1(f->body, IR_OP_ADD, (IrValue *[]){ big, one }, 2);
    IrValue *quot = op1(f->body, IR_OP_DIV, (IrValue *[]){ big, two }, 2);
    IrValue *lt = op1(f->body, IR_OP_LT, (IrValue *[]){ one, big }, 2);
    IrValue *a = op1(f->body, IR_OP_MUL, (IrValue *[]){ over, quot }, 2);
    ret(op1(f->body, IR_OP_MUL, (IrValue *[]){ a, lt }, 2));
    simplify_twice();
    cr_assert_str_eq(print(),
        "syms T\n\nfunc @main(%x: f32[T, 8]) -> (i32[]) {\n"
        "  %0 = const {value = 2147483647} : i32[]\n"
        "  %1 = const {value = 1} : i32[]\n"
        "  %2 = const {value = 2} : i32[]\n"
        "  %3 = add %0, %1 : i32[]\n"
        "  %4 = div %0, %2 : i32[]\n"
        "  %5 = mul %3, %4 : i32[]\n"
        "  return %5\n"
        "}\n");
}

Test(pass_simplify, arithmetic_identities_return_the_operand)
{
    IrValue *one = fill(f->body, DT_F32, (Shape){ 0 }, 1);
    IrValue *zero = fill(f->body, DT_F32, (Shape){ 0 }, 0);
    IrValue *a = op1(f->body, IR_OP_MUL, (IrValue *[]){ one, x }, 2);
    IrValue *b = op1(f->body, IR_OP_ADD, (IrValue *[]){ a, zero }, 2);
    IrValue *c = op1(f->body, IR_OP_DIV, (IrValue *[]){ b, one }, 2);
    IrValue *d = op1(f->body, IR_OP_SUB, (IrValue *[]){ c, zero }, 2);
    ret(op1(f->body, IR_OP_TANH, &d, 1));
    simplify_twice();
    cr_assert_str_eq(print(),
        HEAD "(f32[T, 8]) {\n"
        "  %0 = tanh %x : f32[T, 8]\n"
        "  return %0\n"
        "}\n");
}

Test(pass_simplify, identity_that_would_change_the_shape_is_kept)
{
    Shape col = { .rank = 2, .dims = { tx.dims[0], dim_const(1) } };
    IrValue *y = ir_region_add_arg(&m, f->body, DT_F32, &col, "y");
    IrValue *ones = fill(f->body, DT_F32, tx, 1);
    ret(op1(f->body, IR_OP_MUL, (IrValue *[]){ y, ones }, 2));  // broadcasts y: not y
    cr_assert_not(pass_simplify(&m, &pc));
}

Test(pass_simplify, transpose_and_reshape_chains_collapse)
{
    IrOp *t1 = ir_op_append(&m, f->body, IR_OP_TRANSPOSE, &x, 1, 1, (SrcSpan){ 0 });
    t1->attrs.perm[0] = 1;
    cr_assert_null(ir_infer(&m, t1));
    IrOp *t2 = ir_op_append(&m, f->body, IR_OP_TRANSPOSE, t1->results, 1, 1, (SrcSpan){ 0 });
    t2->attrs.perm[0] = 1;
    cr_assert_null(ir_infer(&m, t2));
    IrOp *r1 = ir_op_append(&m, f->body, IR_OP_RESHAPE, t2->results, 1, 1, (SrcSpan){ 0 });
    r1->results[0]->shape = (Shape){ .rank = 3, .dims = { tx.dims[0], dim_const(2), dim_const(4) } };
    cr_assert_null(ir_infer(&m, r1));
    IrOp *r2 = ir_op_append(&m, f->body, IR_OP_RESHAPE, r1->results, 1, 1, (SrcSpan){ 0 });
    r2->results[0]->shape = tx;
    cr_assert_null(ir_infer(&m, r2));
    ret(r2->results[0]);
    simplify_twice();
    cr_assert_str_eq(print(), HEAD "(f32[T, 8]) {\n  return %x\n}\n");
}

/* A swap of the last two axes after another permutation stays a separate transpose (the
 * GEMM and flash attention read a swap in place); the other way round they combine. */
static IrOp *transpose3(IrValue *in, uint8_t p0, uint8_t p1, uint8_t p2)
{
    IrOp *t = ir_op_append(&m, f->body, IR_OP_TRANSPOSE, &in, 1, 1, (SrcSpan){ 0 });
    t->attrs.perm[0] = p0, t->attrs.perm[1] = p1, t->attrs.perm[2] = p2;
    cr_assert_null(ir_infer(&m, t));
    return t;
}

Test(pass_simplify, last_two_swap_after_a_permutation_is_kept)
{
    Shape s3 = { .rank = 3, .dims = { tx.dims[0], dim_const(2), dim_const(4) } };
    IrValue *k = ir_region_add_arg(&m, f->body, DT_F32, &s3, "k");
    IrOp *heads = transpose3(k, 1, 0, 2);                    // [2, T, 4]
    IrOp *kt = transpose3(heads->results[0], 0, 2, 1);       // [2, 4, T]: a swap, kept
    IrOp *sw = transpose3(k, 0, 2, 1);                       // [T, 4, 2]
    IrOp *both = transpose3(sw->results[0], 1, 0, 2);        // [4, T, 2]: combines
    IrOp *cat = ir_op_append(&m, f->body, IR_OP_RESHAPE, kt->results, 1, 1, (SrcSpan){ 0 });
    cat->results[0]->shape = (Shape){ .rank = 2, .dims = { dim_const(8), tx.dims[0] } };
    cr_assert_null(ir_infer(&m, cat));
    IrOp *r2 = ir_op_append(&m, f->body, IR_OP_RESHAPE, both->results, 1, 1, (SrcSpan){ 0 });
    r2->results[0]->shape = (Shape){ .rank = 2, .dims = { dim_const(8), tx.dims[0] } };
    cr_assert_null(ir_infer(&m, r2));
    IrOp *sum = ir_op_append(&m, f->body, IR_OP_ADD, (IrValue *[]){ cat->results[0], r2->results[0] },
                             2, 1, (SrcSpan){ 0 });
    cr_assert_null(ir_infer(&m, sum));
    ret(sum->results[0]);
    simplify_twice();
    cr_assert_eq(kt->operands[0], heads->results[0], "the swap was folded into the permutation");
    cr_assert_eq(both->operands[0], k, "a permutation after a swap was not combined");
    cr_assert_eq(both->attrs.perm[0], 2);
    cr_assert_eq(both->attrs.perm[1], 0);
    cr_assert_eq(both->attrs.perm[2], 1);
}

Test(pass_simplify, equal_ops_are_merged)
{
    IrValue *a = op1(f->body, IR_OP_EXP, &x, 1);
    IrValue *b = op1(f->body, IR_OP_EXP, &x, 1);
    b->name = "e";
    IrValue *c1 = fill(f->body, DT_F32, (Shape){ 0 }, 0.5), *c2 = fill(f->body, DT_F32, (Shape){ 0 }, 0.5);
    IrValue *p = op1(f->body, IR_OP_MUL, (IrValue *[]){ a, c1 }, 2);
    IrValue *q = op1(f->body, IR_OP_MUL, (IrValue *[]){ b, c2 }, 2);
    ret(op1(f->body, IR_OP_SUB, (IrValue *[]){ p, q }, 2));
    simplify_twice();
    cr_assert_str_eq(print(),
        HEAD "(f32[T, 8]) {\n"
        "  %e = exp %x : f32[T, 8]\n"
        "  %0 = const {value = 0.5} : f32[]\n"
        "  %1 = mul %e, %0 : f32[T, 8]\n"
        "  %2 = sub %1, %1 : f32[T, 8]\n"
        "  return %2\n"
        "}\n");
}

Test(pass_simplify, ops_with_different_attributes_are_not_merged)
{
    IrOp *s0 = op(f->body, IR_OP_SOFTMAX, &x, 1);
    IrOp *s1 = ir_op_append(&m, f->body, IR_OP_SOFTMAX, &x, 1, 1, (SrcSpan){ 0 });
    s1->attrs.axis = 1;
    cr_assert_null(ir_infer(&m, s1));
    ret(op1(f->body, IR_OP_ADD, (IrValue *[]){ s0->results[0], s1->results[0] }, 2));
    cr_assert_not(pass_simplify(&m, &pc));
}

/* loop %i in 0..4 shared (%h = x) { BODY(%h); yield } with body ops made by fn */
static IrOp *loop_with(IrValue *(*fn)(IrRegion *b, IrValue *h))
{
    IrOp *loop = ir_op_append(&m, f->body, IR_OP_LOOP, &x, 1, 1, (SrcSpan){ 0 });
    loop->attrs.trips = dim_const(4);
    IrRegion *b = ir_region_new(&m, f, loop);
    ir_region_add_arg(&m, b, DT_I32, &(Shape){ 0 }, "i");
    IrValue *h = ir_region_add_arg(&m, b, DT_F32, &tx, "h");
    IrValue *y = fn(b, h);
    ir_op_append(&m, b, IR_OP_YIELD, &y, 1, 0, (SrcSpan){ 0 });
    cr_assert_null(ir_infer(&m, loop));
    return loop;
}

static IrValue *body_exp_x_plus_h(IrRegion *b, IrValue *h)
{
    IrValue *e = op1(b, IR_OP_EXP, &x, 1);  // equal to the exp before the loop
    return op1(b, IR_OP_ADD, (IrValue *[]){ e, h }, 2);
}

Test(pass_simplify, ops_in_a_body_merge_with_dominating_outer_ops)
{
    IrValue *outer = op1(f->body, IR_OP_EXP, &x, 1);
    IrOp *loop = loop_with(body_exp_x_plus_h);
    ret(op1(f->body, IR_OP_ADD, (IrValue *[]){ outer, loop->results[0] }, 2));
    simplify_twice();
    cr_assert_str_eq(print(),
        HEAD "(f32[T, 8]) {\n"
        "  %0 = exp %x : f32[T, 8]\n"
        "  %2 = loop %i in 0..4 shared (%h = %x) {\n"
        "    %1 = add %0, %h : f32[T, 8]\n"
        "    yield %1\n"
        "  } : f32[T, 8]\n"
        "  %3 = add %0, %2 : f32[T, 8]\n"
        "  return %3\n"
        "}\n");
}

Test(pass_simplify, outer_ops_do_not_merge_with_ops_inside_a_body)
{
    IrOp *loop = loop_with(body_exp_x_plus_h);
    IrValue *after = op1(f->body, IR_OP_EXP, &x, 1);  // the body's exp does not dominate
    ret(op1(f->body, IR_OP_ADD, (IrValue *[]){ after, loop->results[0] }, 2));
    cr_assert_not(pass_simplify(&m, &pc));
    cr_assert_eq(ir_verify(&m, NULL), 0);
}

Test(pass_simplify, dead_ops_are_deleted)
{
    IrValue *a = op1(f->body, IR_OP_EXP, &x, 1);
    op1(f->body, IR_OP_TANH, &a, 1);  // unused, and a with it
    IrValue *w_unused = fill(f->body, DT_F32, tx, 4);
    (void)w_unused;
    ret(x);
    simplify_twice();
    cr_assert_str_eq(print(), HEAD "(f32[T, 8]) {\n  return %x\n}\n");
}

static IrValue *body_tanh(IrRegion *b, IrValue *h)
{
    return op1(b, IR_OP_TANH, &h, 1);
}

Test(pass_simplify, unused_loop_without_side_effects_is_deleted)
{
    loop_with(body_tanh);
    ret(x);
    simplify_twice();
    cr_assert_str_eq(print(), HEAD "(f32[T, 8]) {\n  return %x\n}\n");
}

static IrFunc *callee;

static IrValue *body_call(IrRegion *b, IrValue *h)
{
    IrOp *c = ir_op_append(&m, b, IR_OP_CALL, &h, 1, 1, (SrcSpan){ 0 });
    c->attrs.callee = callee;
    cr_assert_null(ir_infer(&m, c));
    return c->results[0];
}

Test(pass_simplify, unused_loop_with_a_call_is_kept)
{
    callee = ir_add_func(&m, "g", (SrcSpan){ 0 });
    IrValue *p = ir_region_add_arg(&m, callee->body, DT_F32, &tx, "p");
    ir_op_append(&m, callee->body, IR_OP_RETURN, &p, 1, 0, (SrcSpan){ 0 });
    loop_with(body_call);
    ret(x);
    cr_assert_not(pass_simplify(&m, &pc));
    cr_assert_eq(f->body->first->kind, IR_OP_LOOP);
}

Test(pass_simplify, dead_ops_inside_a_body_are_deleted)
{
    IrOp *loop = loop_with(body_tanh);
    IrRegion *b = loop->body;
    IrValue *h = b->args[1];
    ir_op_insert_before(&m, b, b->first, IR_OP_EXP, &h, 1, 1, (SrcSpan){ 0 })->results[0]->shape = tx;
    ret(loop->results[0]);
    simplify_twice();
    cr_assert_eq(b->first->kind, IR_OP_TANH);
    cr_assert_eq(h->nuses, 1);
}

Test(pass_simplify, returned_value_replacement_updates_the_output)
{
    IrValue *one = fill(f->body, DT_F32, (Shape){ 0 }, 1);
    IrValue *y = op1(f->body, IR_OP_MUL, (IrValue *[]){ x, one }, 2);
    ret(y);
    ir_add_input(&m, "x", x);
    ir_add_output(&m, "y", y);
    simplify_twice();
    cr_assert_eq(m.outputs[0].value, x);
}

/* ------------------------------------------------------------ pipeline ---- */

Test(pass_simplify, pipeline_dumps_after_each_pass_and_verifies)
{
    IrValue *one = fill(f->body, DT_F32, (Shape){ 0 }, 1);
    ret(op1(f->body, IR_OP_MUL, (IrValue *[]){ x, one }, 2));
    Buf dump, errs;
    buf_init(&dump);
    buf_init(&errs);
    pc = (PassCtx){ .opt_level = 1, .dump_after = "all", .dump = &dump, .src_path = "a.tfx",
                    .verify = true, .errs = &errs };
    cr_assert(pipeline_run(&m, &pc));
    cr_assert_str_eq(buf_str(&errs), "");
    cr_assert_str_eq(buf_str(&dump),
        "# tfxc ir after 'inline' (1/3): a.tfx\n"
        HEAD "(f32[T, 8]) {\n"
        "  %0 = const {value = 1} : f32[]\n"
        "  %1 = mul %x, %0 : f32[T, 8]\n"
        "  return %1\n"
        "}\n"
        "\n"
        "# tfxc ir after 'simplify' (2/3): a.tfx\n"
        HEAD "(f32[T, 8]) {\n"
        "  return %x\n"
        "}\n"
        "\n"
        "# tfxc ir after 'decode' (3/3): a.tfx\n"
        "syms T, P\n\nfunc @main(%x: f32[T, 8]) -> (f32[T, 8]) {\n"
        "  return %x\n"
        "}\n"
        "\n"
        "func @step(%x: f32[T, 8]) -> (f32[T, 8]) {\n"
        "  return %x\n"
        "}\n");
    buf_dispose(&dump);
    buf_dispose(&errs);
}

Test(pass_simplify, pipeline_skips_passes_above_the_level_and_dumps_one_pass)
{
    ret(x);
    Buf dump;
    buf_init(&dump);
    pc = (PassCtx){ .opt_level = 0, .dump_after = "inline", .dump = &dump };
    cr_assert(pipeline_run(&m, &pc));
    cr_assert_str_eq(buf_str(&dump),
        "# tfxc ir after 'inline' (1/2)\n" HEAD "(f32[T, 8]) {\n  return %x\n}\n");
    buf_dispose(&dump);
    cr_assert(pipeline_knows("simplify"));
    cr_assert(pipeline_knows("all"));
    cr_assert_not(pipeline_knows("fuse"));
}

Test(pass_simplify, pipeline_stops_when_verification_fails)
{
    op1(f->body, IR_OP_EXP, &x, 1);  // no return
    Buf errs;
    buf_init(&errs);
    pc = (PassCtx){ .opt_level = 1, .verify = true, .errs = &errs };
    cr_assert_not(pipeline_run(&m, &pc));
    cr_assert_str_eq(buf_str(&errs),
                     "ir verification failed after pass 'inline':\n"
                     "@main: body does not end in return\n");
    buf_dispose(&errs);
}
