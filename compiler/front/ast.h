/* ast.h - the syntax tree of a .tfx file. Every node lives in the compile session's
 * arena and carries the SrcSpan of the text it came from. The grammar builds nodes
 * only through the constructors below (one call per action); sema reads them.
 * One AstNode type with a kind tag; the union member to read is named per tag in
 * ast_kinds.def. */
#ifndef TFX_FRONT_AST_H
#define TFX_FRONT_AST_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/buf.h"
#include "diag.h"

typedef struct AstNode AstNode;

typedef enum AstKind {
#define X(kind, text, member) AST_##kind,
#include "ast_kinds.def"
#undef X
    AST_COUNT_
} AstKind;

/* A growable array of nodes, grown in the arena. */
typedef struct AstList {
    AstNode **items;
    uint32_t  n, cap;
} AstList;

/* Binary and unary operators. */
typedef enum AstOp {
    AST_OP_ADD, AST_OP_SUB, AST_OP_MUL, AST_OP_DIV, AST_OP_MOD, AST_OP_MATMUL, AST_OP_POW,
    AST_OP_LT, AST_OP_LE, AST_OP_GT, AST_OP_GE, AST_OP_EQ, AST_OP_NE,
    AST_OP_NEG, /* unary */
    AST_OP_COUNT_
} AstOp;

/* Element types of tensors; also used by the IR (ir.h includes this enum's twin). */
typedef enum AstDType { AST_DT_F32, AST_DT_F16, AST_DT_BF16, AST_DT_I32, AST_DT_COUNT_ } AstDType;

/* Kinds of non-tensor values a block parameter can take. */
typedef enum AstScalarKind {
    AST_SK_INT, AST_SK_FLOAT, AST_SK_BOOL, AST_SK_MASK, AST_SK_FN, AST_SK_STR, AST_SK_COUNT_
} AstScalarKind;

struct AstNode {
    AstKind kind;
    SrcSpan span;
    union {
        /* AST_FILE */
        struct { AstList decls; } file;
        /* AST_USE: `use std.nn` - path is the dotted module name as written */
        struct { const char *path; } use;
        /* AST_CONST: `const eps = 1e-5` (file level) */
        struct { const char *name; AstNode *value; } cdecl;
        /* AST_BLOCK: `block name(params) -> ret { body }`; params are AST_PARAM_DEF */
        struct { const char *name; AstList params; AstNode *ret; AstList body; } block;
        /* AST_MODEL: `model name(hparams) { body }`; hparams are AST_HPARAM */
        struct { const char *name; AstList hparams; AstList body; } model;
        /* AST_HPARAM: `layers = 12` in a model header (value may be NULL: required) */
        struct { const char *name; AstNode *value; } hparam;
        /* AST_PARAM_DEF: block argument `x: f32[T, D]`, `heads: int`, `eps: float = 1e-5`;
         * type is AST_TENSOR_TYPE or AST_SCALAR_TYPE; dflt may be NULL */
        struct { const char *name; AstNode *type; AstNode *dflt; } pdef;
        /* AST_TENSOR_TYPE: `f32[T, 4 * D]`; dims are expressions */
        struct { AstDType dtype; AstList dims; } ttype;
        /* AST_SCALAR_TYPE: `int`, `float`, `bool`, `mask`, `fn` */
        struct { AstScalarKind sk; } stype;

        /* ---- statements ---- */
        /* AST_PARAM: `param a, b: f32[D, D] = 0.0 as "key"`; names is a list of AST_NAME;
         * init and key may be NULL; key only allowed with one name */
        struct { AstList names; AstNode *type; AstNode *init; const char *key; } param;
        /* AST_INPUT: `input tokens: i32[T] where T <= ctx`; bounds are AST_BINARY(LE)
         * nodes of the form NAME <= expr */
        struct { const char *name; AstNode *type; AstList bounds; } input;
        /* AST_OUTPUT: `output logits = expr` */
        struct { const char *name; AstNode *value; } output;
        /* AST_ASSIGN: `a, b = expr`; targets is a list of AST_NAME */
        struct { AstList targets; AstNode *value; } assign;
        /* AST_RETURN: `return expr` */
        struct { AstNode *value; } ret;
        /* AST_FOR: `for l in lo..hi scope "h.{l}" { body }` - one set of weights per step;
         * scope may be NULL (then weights are named "<var>.{l}"? no: see docs/language.md) */
        struct { const char *var; AstNode *lo, *hi; const char *scope; AstList body; } forl;
        /* AST_REPEAT: `repeat n as i until cond { body }` - shared weights; var and until
         * may be NULL */
        struct { AstNode *count; const char *var; AstNode *until; AstList body; } repeat;
        /* AST_IF: `if cond { then } else { else }` - cond is a compile-time bool; only the
         * taken branch is checked and lowered. `else if` nests an AST_IF as the only
         * statement of else_body. */
        struct { AstNode *cond; AstList then_body; AstList else_body; } ifs;

        /* ---- expressions ---- */
        /* AST_INT */
        struct { int64_t value; } ival;
        /* AST_FLOAT */
        struct { double value; } fval;
        /* AST_BOOL */
        struct { bool value; } bval;
        /* AST_STRING: text without quotes, escapes already processed */
        struct { const char *value; } sval;
        /* AST_NAME: an identifier reference */
        struct { const char *name; } name;
        /* AST_LIST: `[a, b, c]` */
        struct { AstList items; } list;
        /* AST_BINARY */
        struct { AstOp op; AstNode *lhs, *rhs; } binary;
        /* AST_UNARY */
        struct { AstOp op; AstNode *operand; } unary;
        /* AST_TRANSPOSE: `x^T` swaps the last two axes */
        struct { AstNode *operand; } transpose;
        /* AST_CALL: `f(args) scope "s" rename { "a": "b" } expert (e, h) { body }`.
         * args are AST_ARG; scope may be NULL; renames are AST_RENAME; expert_vars is a
         * list of AST_NAME (empty when there is no expert body) */
        struct {
            const char *callee;
            SrcSpan     callee_span;
            AstList     args;
            const char *scope;
            AstList     renames;
            AstList     expert_vars;
            AstList     expert_body;
            bool        has_expert;
        } call;
        /* AST_ARG: positional (name == NULL) or named `mask = causal` argument */
        struct { const char *name; AstNode *value; } arg;
        /* AST_RENAME: `"wq": "q_proj.weight"` inside rename { } */
        struct { const char *from, *to; } rename;
        /* AST_INDEX: `x[i, a:b, :]`; indices are expressions or AST_SLICE */
        struct { AstNode *base; AstList indices; } index;
        /* AST_SLICE: `lo:hi`, either side may be NULL */
        struct { AstNode *lo, *hi; } slice;
    } u;
    /* Height of the subtree below and including this node (a leaf is 1), set by the
     * constructors (ast_new alone makes a leaf). The parser rejects expressions higher
     * than AST_MAX_EXPR_HEIGHT, so every recursive walk over the tree has bounded depth. */
    uint32_t height;
};

/* The tallest expression the parser accepts (`expression nested deeper than 1000 levels`). */
enum { AST_MAX_EXPR_HEIGHT = 1000 };

/* The optional `expert (e, h) { body }` suffix of a call while it is being parsed;
 * ast_call() copies it into the AST_CALL node. vars are two AST_NAME nodes. */
typedef struct AstExpert {
    AstList vars;
    AstList body;
    bool    present;
} AstExpert;

/* ---- constructors, called from grammar actions ---- */
AstNode *ast_new(Arena *a, AstKind kind, SrcSpan span);
void     ast_list_push(Arena *a, AstList *l, AstNode *n);
AstList  ast_list_one(Arena *a, AstNode *n);

AstNode *ast_int(Arena *a, int64_t v, SrcSpan s);
AstNode *ast_float(Arena *a, double v, SrcSpan s);
AstNode *ast_bool(Arena *a, bool v, SrcSpan s);
AstNode *ast_string(Arena *a, const char *v, SrcSpan s);
AstNode *ast_name(Arena *a, const char *name, SrcSpan s);
AstNode *ast_binary(Arena *a, AstOp op, AstNode *lhs, AstNode *rhs, SrcSpan s);
AstNode *ast_unary(Arena *a, AstOp op, AstNode *operand, SrcSpan s);

/* Returns l with n appended (l's storage may move; use the result). */
AstList  ast_list_add(Arena *a, AstList l, AstNode *n);

/* Declarations. ast_file_add appends one declaration to an AST_FILE, ast_file_add_all
 * each node of a list (the uses of one `use a, b` line). */
AstNode *ast_file(Arena *a, SrcSpan s);
void     ast_file_add(Arena *a, AstNode *file, AstNode *decl);
void     ast_file_add_all(Arena *a, AstNode *file, AstList decls);
/* "prefix.name" in the arena: builds the dotted module path of `use`. */
const char *ast_path_join(Arena *a, const char *prefix, const char *name);
AstNode *ast_use(Arena *a, const char *path, SrcSpan s);
AstNode *ast_const(Arena *a, const char *name, AstNode *value, SrcSpan s);
AstNode *ast_block(Arena *a, const char *name, AstList params, AstNode *ret, AstList body,
                   SrcSpan s);
AstNode *ast_model(Arena *a, const char *name, AstList hparams, AstList body, SrcSpan s);
AstNode *ast_hparam(Arena *a, const char *name, AstNode *value, SrcSpan s);
AstNode *ast_param_def(Arena *a, const char *name, AstNode *type, AstNode *dflt, SrcSpan s);
AstNode *ast_tensor_type(Arena *a, AstDType dtype, AstList dims, SrcSpan s);
AstNode *ast_scalar_type(Arena *a, AstScalarKind sk, SrcSpan s);

/* Statements. Optional parts are NULL (or an empty list) when absent. */
AstNode *ast_param(Arena *a, AstList names, AstNode *type, AstNode *init, const char *key,
                   SrcSpan s);
AstNode *ast_input(Arena *a, const char *name, AstNode *type, AstList bounds, SrcSpan s);
AstNode *ast_output(Arena *a, const char *name, AstNode *value, SrcSpan s);
AstNode *ast_assign(Arena *a, AstList targets, AstNode *value, SrcSpan s);
AstNode *ast_return(Arena *a, AstNode *value, SrcSpan s);
AstNode *ast_for(Arena *a, const char *var, AstNode *lo, AstNode *hi, const char *scope,
                 AstList body, SrcSpan s);
AstNode *ast_repeat(Arena *a, AstNode *count, const char *var, AstNode *until, AstList body,
                    SrcSpan s);
/* else_body is empty without `else`; for `else if` it holds the nested AST_IF alone. */
AstNode *ast_if(Arena *a, AstNode *cond, AstList then_body, AstList else_body, SrcSpan s);

/* Expressions. */
AstNode *ast_list_literal(Arena *a, AstList items, SrcSpan s);
AstNode *ast_transpose(Arena *a, AstNode *operand, SrcSpan s);
AstNode *ast_index(Arena *a, AstNode *base, AstList indices, SrcSpan s);
AstNode *ast_slice(Arena *a, AstNode *lo, AstNode *hi, SrcSpan s);
AstNode *ast_arg(Arena *a, const char *name, AstNode *value, SrcSpan s);
AstNode *ast_rename(Arena *a, const char *from, const char *to, SrcSpan s);
AstExpert ast_expert(Arena *a, AstNode *var1, AstNode *var2, AstList body);
AstExpert ast_expert_none(void);
/* callee_span covers the callee's name; s the whole call with its suffixes. */
AstNode *ast_call(Arena *a, const char *callee, SrcSpan callee_span, AstList args,
                  const char *scope, AstList renames, AstExpert expert, SrcSpan s);

/* ---- printing (--emit=ast) ---- */
const char *ast_kind_name(AstKind k);
const char *ast_op_text(AstOp op);          /* "+", "@", "**", "<=", "-" ... */
const char *ast_dtype_name(AstDType t);     /* "f32" ... */
const char *ast_scalar_kind_name(AstScalarKind k); /* "int" ... */
/* The scalar kind named `name` ("int" ... "str") into *out; false for any other name. */
bool ast_scalar_kind_from_name(const char *name, AstScalarKind *out);
/* S-expression-like dump, one node per line, indented two spaces per level, with
 * `@line:col` after each node kind. Deterministic; specified in docs/language.md. */
void ast_print(Buf *out, const AstNode *file);
/* The literal formats shared by the AST dump and the token dump: a double in the shortest
 * form that reads back to the same value (`1e-05`, `0.5`, `2.0`), and a string in double
 * quotes with `\"`, `\\`, `\n`, `\t` and `\xNN` escapes. */
void ast_format_float(Buf *out, double v);
void ast_format_string(Buf *out, const char *s);

#endif
