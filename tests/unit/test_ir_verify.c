/* test_ir_verify.c - ir_verify(): a well-formed module passes, and each class of
 * broken IR (use before definition, invisible value, arity, wrong result type,
 * missing or misplaced terminator, bad use counts, outputs, call cycles) is reported
 * with the exact `@func: %N = op: message` line. */
#include <criterion/criterion.h>
#include <string.h>

#include "ir/ir.h"

static Arena    arena;
static IrModule m;
static Buf      errs;
static Dim      T;
static IrFunc  *f;
static IrValue *x;  /* @main's argument, f32[T, 8] */

static void setup(void)
{
    arena_init(&arena);
    ir_module_init(&m, &arena, "t");
    T = dim_sym(ir_add_sym(&m, "T"));
    buf_init(&errs);
    f = ir_add_func(&m, "main", (SrcSpan){ 0 });
    Shape s = { .rank = 2, .dims = { T, dim_const(8) } };
    x = ir_region_add_arg(&m, f->body, DT_F32, &s, "x");
}

static void teardown(void)
{
    buf_dispose(&errs);
    arena_dispose(&arena);
}

TestSuite(ir_verify, .init = setup, .fini = teardown);

static IrOp *add_op(IrRegion *r, IrOpKind k, IrValue **ops, uint32_t nops, uint32_t nres)
{
    return ir_op_append(&m, r, k, ops, nops, nres, (SrcSpan){ 0 });
}

/* Appends an op and runs its shape rule, which must pass. */
static IrValue *op1(IrRegion *r, IrOpKind k, IrValue **ops, uint32_t nops)
{
    IrOp *op = add_op(r, k, ops, nops, 1);
    cr_assert_null(ir_infer(&m, op));
    return op->results[0];
}

static void ret(IrValue *v)
{
    add_op(f->body, IR_OP_RETURN, &v, 1, 0);
}

/* loop %i in 0..3 shared (%h = init) { %n = exp %h; yield %n } */
static IrOp *add_loop(IrValue *init)
{
    IrOp *loop = add_op(f->body, IR_OP_LOOP, &init, 1, 1);
    loop->attrs.trips = dim_const(3);
    IrRegion *b = ir_region_new(&m, f, loop);
    ir_region_add_arg(&m, b, DT_I32, &(Shape){ 0 }, "i");
    IrValue *h = ir_region_add_arg(&m, b, init->dtype, &init->shape, "h");
    IrValue *n = op1(b, IR_OP_EXP, &h, 1);
    n->name = "n";
    add_op(b, IR_OP_YIELD, &n, 1, 0);
    cr_assert_null(ir_infer(&m, loop));
    return loop;
}

static int verify(void)
{
    errs.len = 0;
    return ir_verify(&m, &errs);
}

Test(ir_verify, well_formed_module_has_no_problems)
{
    IrValue *a = op1(f->body, IR_OP_TANH, &x, 1);
    IrOp *loop = add_loop(a);
    ret(op1(f->body, IR_OP_ADD, (IrValue *[]){ loop->results[0], x }, 2));
    ir_add_input(&m, "x", x);
    ir_add_output(&m, "y", f->body->last->operands[0]);
    cr_assert_eq(verify(), 0, "%s", buf_str(&errs));
    cr_assert_str_eq(buf_str(&errs), "");
}

Test(ir_verify, use_before_definition)
{
    IrValue *a = op1(f->body, IR_OP_TANH, &x, 1);
    IrValue *b = op1(f->body, IR_OP_EXP, &a, 1);
    ret(b);
    ir_op_set_operand(a->def, 0, b);  // tanh now reads the exp defined after it
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: %0 = tanh: operand %1 is used before its definition\n");
}

Test(ir_verify, value_of_a_nested_region_is_not_visible_outside)
{
    IrOp *loop = add_loop(x);
    IrValue *inner = loop->body->first->results[0];  // %n, defined in the body
    ret(op1(f->body, IR_OP_NEG, &inner, 1));
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: %1 = neg: operand %n is not visible here\n");
}

Test(ir_verify, value_of_another_function_is_not_visible)
{
    IrFunc *g = ir_add_func(&m, "g", (SrcSpan){ 0 });
    IrValue *y = ir_region_add_arg(&m, g->body, DT_F32, &x->shape, "y");
    add_op(g->body, IR_OP_RETURN, &y, 1, 0);
    ret(op1(f->body, IR_OP_NEG, &y, 1));
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: %0 = neg: operand %? is not visible here\n");
}

Test(ir_verify, wrong_arity_is_reported_with_counts)
{
    IrOp *add = add_op(f->body, IR_OP_ADD, (IrValue *[]){ x, x, x }, 3, 1);
    add->results[0]->shape = x->shape;
    IrOp *topk = add_op(f->body, IR_OP_TOPK, &x, 1, 1);
    topk->attrs.k = 1;
    ret(add->results[0]);
    cr_assert_eq(verify(), 2);
    cr_assert_str_eq(buf_str(&errs),
                     "@main: %0 = add: has 3 operands, expects 2\n"
                     "@main: %1 = topk: has 1 results, expects 2\n");
}

Test(ir_verify, variadic_arity_comes_from_the_op_rule)
{
    IrOp *ln = add_op(f->body, IR_OP_LAYERNORM, (IrValue *[]){ x, x }, 2, 1);
    ln->results[0]->shape = x->shape;
    ret(ln->results[0]);
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: %0 = layernorm: wrong number of operands\n");
}

Test(ir_verify, result_type_must_match_the_shape_rule)
{
    IrValue *a = op1(f->body, IR_OP_TANH, &x, 1);
    a->shape.dims[1] = dim_const(16);
    IrValue *b = op1(f->body, IR_OP_EXP, &x, 1);
    b->dtype = DT_F16;
    ret(a);
    cr_assert_eq(verify(), 2);
    cr_assert_str_eq(buf_str(&errs),
                     "@main: %0 = tanh: result %0 is f32[T, 16] but the shape rule gives f32[T, 8]\n"
                     "@main: %1 = exp: result %1 is f16[T, 8] but the shape rule gives f32[T, 8]\n");
}

Test(ir_verify, shape_rule_errors_are_reported)
{
    Shape w = { .rank = 2, .dims = { dim_const(16), dim_const(4) } };
    IrValue *wv = ir_region_add_arg(&m, f->body, DT_F32, &w, "w");
    IrOp *mm = add_op(f->body, IR_OP_MATMUL, (IrValue *[]){ x, wv }, 2, 1);
    ret(mm->results[0]);
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: %0 = matmul: inner dimensions differ\n");
}

Test(ir_verify, function_without_return)
{
    op1(f->body, IR_OP_TANH, &x, 1);
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: body does not end in return\n");
}

Test(ir_verify, loop_body_without_yield)
{
    IrOp *loop = add_loop(x);
    ir_op_erase(loop->body->last);
    ret(loop->results[0]);
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: %0 = loop: body does not end in yield\n");
}

Test(ir_verify, op_after_the_terminator)
{
    ret(x);
    add_op(f->body, IR_OP_RETURN, &x, 1, 0);
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: return: op after the terminator of its region\n");
}

Test(ir_verify, return_inside_a_loop_body)
{
    IrOp *loop = add_loop(x);
    IrValue *h = loop->body->args[1];
    ir_op_insert_before(&m, loop->body, loop->body->last, IR_OP_RETURN, &h, 1, 0, (SrcSpan){ 0 });
    ret(loop->results[0]);
    cr_assert_eq(verify(), 2);
    cr_assert_str_eq(buf_str(&errs),
                     "@main: return: return inside a loop or moe body\n"
                     "@main: yield: op after the terminator of its region\n");
}

Test(ir_verify, use_counts_must_match)
{
    IrValue *a = op1(f->body, IR_OP_TANH, &x, 1);
    ret(a);
    a->nuses = 3;
    x->nuses = 0;
    cr_assert_eq(verify(), 2);
    cr_assert_str_eq(buf_str(&errs),
                     "@main: argument %x records 0 uses but has 1\n"
                     "@main: %0 = tanh: %0 records 3 uses but has 1\n");
}

Test(ir_verify, yield_must_match_the_carried_values)
{
    IrOp *loop = add_loop(x);
    IrOp *y = loop->body->last;
    ir_op_set_operand(y, 0, loop->body->args[0]);  // yields the i32 index instead
    ret(loop->results[0]);
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: %0 = loop: yielded type differs from the carried value\n");
}

Test(ir_verify, outputs_must_be_the_returned_values)
{
    IrValue *a = op1(f->body, IR_OP_TANH, &x, 1);
    ret(a);
    ir_add_output(&m, "y", x);
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@main: output 'y' is not returned value 0\n");
}

Test(ir_verify, call_cycles_are_reported)
{
    IrFunc *g = ir_add_func(&m, "g", (SrcSpan){ 0 });
    IrValue *y = ir_region_add_arg(&m, g->body, DT_F32, &x->shape, "y");
    IrOp *self = add_op(g->body, IR_OP_CALL, &y, 1, 1);
    self->attrs.callee = g;
    self->results[0]->shape = x->shape;
    add_op(g->body, IR_OP_RETURN, self->results, 1, 0);
    IrOp *call = add_op(f->body, IR_OP_CALL, &x, 1, 1);
    call->attrs.callee = g;
    cr_assert_null(ir_infer(&m, call));
    ret(call->results[0]);
    cr_assert_eq(verify(), 1);
    cr_assert_str_eq(buf_str(&errs), "@g: call cycle through @g\n");
}

Test(ir_verify, missing_operand_and_broken_links)
{
    IrOp *neg = add_op(f->body, IR_OP_NEG, &x, 1, 1);
    neg->results[0]->shape = x->shape;
    ir_op_set_operand(neg, 0, NULL);
    IrOp *tanh_op = add_op(f->body, IR_OP_TANH, &x, 1, 1);
    tanh_op->results[0]->shape = x->shape;
    tanh_op->results[0]->index = 4;
    ret(neg->results[0]);
    cr_assert_eq(verify(), 2);
    cr_assert_str_eq(buf_str(&errs),
                     "@main: %0 = neg: operand 0 is missing\n"
                     "@main: %1 = tanh: result 0 is not linked to its op\n");
}

Test(ir_verify, count_only_without_a_buffer)
{
    op1(f->body, IR_OP_TANH, &x, 1);
    cr_assert_eq(ir_verify(&m, NULL), 1);
}
