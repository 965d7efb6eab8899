/* test_pass_inline.c - pass "inline": calls become copies of the callee's body (also
 * nested calls and calls inside loop bodies), unreachable funcs are deleted, spans and
 * names survive, the result verifies, and a second run changes nothing. */
#include <criterion/criterion.h>
#include <string.h>

#include "passes/pass.h"

static Arena    arena;
static IrModule m;
static Buf      out;
static PassCtx  pc;
static Shape    tx;      /* f32[T, 8] */
static IrFunc  *main_f;  /* funcs[0] */
static IrValue *in;      /* its argument %in: f32[T, 8] */

static void setup(void)
{
    arena_init(&arena);
    ir_module_init(&m, &arena, NULL);
    Dim T = dim_sym(ir_add_sym(&m, "T"));
    tx = (Shape){ .rank = 2, .dims = { T, dim_const(8) } };
    buf_init(&out);
    pc = (PassCtx){ .opt_level = 0 };
    main_f = ir_add_func(&m, "main", (SrcSpan){ 0 });
    in = ir_region_add_arg(&m, main_f->body, DT_F32, &tx, "in");
}

static void teardown(void)
{
    buf_dispose(&out);
    arena_dispose(&arena);
}

TestSuite(pass_inline, .init = setup, .fini = teardown);

static SrcSpan line(uint32_t n)
{
    return (SrcSpan){ .line = n, .col = 1 };
}

static IrValue *op1(IrRegion *r, IrOpKind k, IrValue **ops, uint32_t nops, uint32_t ln)
{
    IrOp *op = ir_op_append(&m, r, k, ops, nops, 1, line(ln));
    cr_assert_null(ir_infer(&m, op));
    return op->results[0];
}

static IrValue *call(IrRegion *r, IrFunc *callee, IrValue *arg, uint32_t ln)
{
    IrOp *op = ir_op_append(&m, r, IR_OP_CALL, &arg, 1, 1, line(ln));
    op->attrs.callee = callee;
    cr_assert_null(ir_infer(&m, op));
    return op->results[0];
}

static void ret(IrRegion *r, IrValue *v)
{
    ir_op_append(&m, r, IR_OP_RETURN, &v, 1, 0, line(0));
}

/* func @NAME(%x: f32[T, 8]) { %0 = tanh %x; %h = mul %0, %x; return %h } at lines 10.. */
static IrFunc *make_block(const char *name, IrFunc *inner)
{
    IrFunc *f = ir_add_func(&m, name, line(0));
    IrValue *x = ir_region_add_arg(&m, f->body, DT_F32, &tx, "x");
    IrValue *a = inner ? call(f->body, inner, x, 10) : op1(f->body, IR_OP_TANH, &x, 1, 10);
    IrValue *h = op1(f->body, IR_OP_MUL, (IrValue *[]){ a, x }, 2, 11);
    h->name = "h";
    ret(f->body, h);
    return f;
}

/* The dump's lines up to @main's first op. */
#define MAIN "syms T\n\nfunc @main(%in: f32[T, 8]) -> (f32[T, 8]) {\n"

static const char *print(void)
{
    out.len = 0;
    ir_print(&out, &m, NULL);
    return buf_str(&out);
}

Test(pass_inline, call_is_replaced_by_the_body)
{
    IrFunc *blk = make_block("blk", NULL);
    IrValue *y = call(main_f->body, blk, in, 3);
    y->name = "y";
    ret(main_f->body, y);
    cr_assert(pass_inline(&m, &pc));
    cr_assert_eq(ir_verify(&m, NULL), 0);
    cr_assert_str_eq(print(),
        MAIN
        "  %0 = tanh %in : f32[T, 8]\n"
        "  %y = mul %0, %in : f32[T, 8]\n"
        "  return %y\n"
        "}\n");
}

Test(pass_inline, nested_calls_are_inlined_through)
{
    IrFunc *inner = make_block("inner", NULL);
    IrFunc *outer = make_block("outer", inner);
    ret(main_f->body, call(main_f->body, outer, in, 3));
    cr_assert(pass_inline(&m, &pc));
    cr_assert_eq(ir_verify(&m, NULL), 0);
    cr_assert_eq(m.nfuncs, 1);
    cr_assert_str_eq(print(),
        MAIN
        "  %0 = tanh %in : f32[T, 8]\n"
        "  %h = mul %0, %in : f32[T, 8]\n"
        "  %h.1 = mul %h, %in : f32[T, 8]\n"
        "  return %h.1\n"
        "}\n");
}

Test(pass_inline, calls_inside_loop_bodies_stay_in_the_body)
{
    IrFunc *blk = make_block("blk", NULL);
    IrOp *loop = ir_op_append(&m, main_f->body, IR_OP_LOOP, &in, 1, 1, line(4));
    loop->attrs.trips = dim_const(6);
    IrRegion *b = ir_region_new(&m, main_f, loop);
    ir_region_add_arg(&m, b, DT_I32, &(Shape){ 0 }, "i");
    IrValue *x = ir_region_add_arg(&m, b, DT_F32, &tx, "x");
    IrValue *next = call(b, blk, x, 5);
    ir_op_append(&m, b, IR_OP_YIELD, &next, 1, 0, line(6));
    cr_assert_null(ir_infer(&m, loop));
    ret(main_f->body, loop->results[0]);
    cr_assert(pass_inline(&m, &pc));
    cr_assert_eq(ir_verify(&m, NULL), 0);
    cr_assert_str_eq(print(),
        MAIN
        "  %1 = loop %i in 0..6 shared (%x = %in) {\n"
        "    %0 = tanh %x : f32[T, 8]\n"
        "    %h = mul %0, %x : f32[T, 8]\n"
        "    yield %h\n"
        "  } : f32[T, 8]\n"
        "  return %1\n"
        "}\n");
    cr_assert_eq(b->first->parent, b);
}

Test(pass_inline, a_callee_called_twice_is_copied_twice)
{
    IrFunc *blk = make_block("blk", NULL);
    IrValue *a = call(main_f->body, blk, in, 3);
    IrValue *b = call(main_f->body, blk, a, 4);
    ret(main_f->body, b);
    cr_assert(pass_inline(&m, &pc));
    cr_assert_eq(ir_verify(&m, NULL), 0);
    cr_assert_str_eq(print(),
        MAIN
        "  %0 = tanh %in : f32[T, 8]\n"
        "  %h = mul %0, %in : f32[T, 8]\n"
        "  %1 = tanh %h : f32[T, 8]\n"
        "  %h.1 = mul %1, %h : f32[T, 8]\n"
        "  return %h.1\n"
        "}\n");
}

Test(pass_inline, inlined_ops_keep_the_callee_spans)
{
    IrFunc *blk = make_block("blk", NULL);
    ret(main_f->body, call(main_f->body, blk, in, 3));
    pass_inline(&m, &pc);
    const IrOp *first = main_f->body->first;
    cr_assert_eq(first->kind, IR_OP_TANH);
    cr_assert_eq(first->span.line, 10);
    cr_assert_eq(first->next->span.line, 11);
}

Test(pass_inline, unreachable_funcs_are_deleted_in_order)
{
    make_block("unused", NULL);
    ret(main_f->body, in);
    cr_assert(pass_inline(&m, &pc), "deleting a func is a change");
    cr_assert_eq(m.nfuncs, 1);
    cr_assert_eq(m.funcs[0], main_f);
}

Test(pass_inline, second_run_changes_nothing)
{
    IrFunc *inner = make_block("inner", NULL);
    IrFunc *outer = make_block("outer", inner);
    ret(main_f->body, call(main_f->body, outer, in, 3));
    cr_assert(pass_inline(&m, &pc));
    char *once = arena_strdup(&arena, print());
    cr_assert_not(pass_inline(&m, &pc));
    cr_assert_str_eq(print(), once);
}

Test(pass_inline, module_output_follows_the_inlined_value)
{
    IrFunc *blk = make_block("blk", NULL);
    IrValue *y = call(main_f->body, blk, in, 3);
    ret(main_f->body, y);
    ir_add_input(&m, "in", in);
    ir_add_output(&m, "y", y);
    pass_inline(&m, &pc);
    cr_assert_eq(m.outputs[0].value, main_f->body->last->operands[0]);
    cr_assert_eq(ir_verify(&m, NULL), 0);
}

Test(pass_inline, call_cycles_are_left_for_the_verifier)
{
    IrFunc *g = ir_add_func(&m, "g", line(0));
    IrValue *x = ir_region_add_arg(&m, g->body, DT_F32, &tx, "x");
    IrOp *self = ir_op_append(&m, g->body, IR_OP_CALL, &x, 1, 1, line(1));
    self->attrs.callee = g;
    self->results[0]->shape = tx;
    ret(g->body, self->results[0]);
    ret(main_f->body, call(main_f->body, g, in, 3));
    pass_inline(&m, &pc);  // must terminate
    cr_assert_eq(m.nfuncs, 2, "@g is still called");
    cr_assert_eq(ir_verify(&m, NULL), 1);
}
