/* sema_module.c - the sema entry point: loads `use`d modules (search path: -I dirs in
 * order, then the stdlib directory), builds the table of blocks and constants, checks
 * that the main file holds exactly one model, evaluates its hyperparameters (with -D
 * overrides) and lowers the model body into @main. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "sema_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parse.h"
#include "source.h"

Decl *sema_find_decl(Sema *s, const char *name)
{
    for (uint32_t i = 0; i < s->ndecls; i++)
        if (strcmp(s->decls[i].name, name) == 0)
            return &s->decls[i];
    return NULL;
}

static void add_module(Sema *s, const char *path, const AstNode *ast, uint32_t file_id)
{
    if (s->nmods == s->capmods) {
        uint32_t cap = s->capmods ? s->capmods * 2 : 8;
        s->mods = arena_grow(s->a, s->mods, sizeof(Module) * s->nmods, sizeof(Module) * cap);
        s->capmods = cap;
    }
    s->mods[s->nmods++] = (Module){ path, ast, file_id };
}

/* "std.nn" -> "nn.tfx" under the stdlib, "my.lib" -> "my/lib.tfx" */
static const char *module_rel_path(Sema *s, const char *dotted, bool *is_std)
{
    *is_std = strncmp(dotted, "std.", 4) == 0;
    char *p = arena_strdup(s->a, *is_std ? dotted + 4 : dotted);
    for (char *q = p; *q; q++)
        if (*q == '.')
            *q = '/';
    return arena_printf(s->a, "%s.tfx", p);
}

/* Returns the path to open; *shown is the name used in messages. */
static const char *find_module(Sema *s, const AstNode *use, const char *importer_dir, const char **shown)
{
    bool is_std;
    const char *rel = module_rel_path(s, use->u.use.path, &is_std);
    for (uint32_t i = 0; i < s->o->ninclude; i++) {
        const char *p = arena_printf(s->a, "%s/%s", s->o->include_dirs[i], rel);
        *shown = p;
        if (access(p, F_OK) == 0)
            return p;
    }
    if (is_std && s->o->stdlib_dir) {
        const char *p = arena_printf(s->a, "%s/%s", s->o->stdlib_dir, rel);
        *shown = arena_printf(s->a, "stdlib/%s", rel);
        if (access(p, F_OK) == 0)
            return p;
    }
    if (!is_std) {
        const char *p = arena_printf(s->a, "%s/%s", importer_dir, rel);
        *shown = p;
        if (access(p, F_OK) == 0)
            return p;
    }
    diag_error(s->d, use->span, "module '%s' not found (looked for '%s' in the -I directories%s)",
               use->u.use.path, rel, is_std ? " and the standard library" : " and beside this file");
    return NULL;
}

static const char *dir_of(Sema *s, const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? arena_strndup(s->a, path, (size_t)(slash - path)) : ".";
}

static void load_imports(Sema *s, const AstNode *file, const char *path, int depth)
{
    if (depth > 32) {
        diag_error(s->d, file->span, "modules import each other more than 32 levels deep");
        return;
    }
    for (uint32_t i = 0; i < file->u.file.decls.n; i++) {
        const AstNode *u = file->u.file.decls.items[i];
        if (u->kind != AST_USE)
            continue;
        const char *shown = NULL;
        const char *mp = find_module(s, u, dir_of(s, path), &shown);
        if (!mp)
            continue;
        bool seen = false;
        char *real = realpath(mp, NULL);
        for (uint32_t j = 0; j < s->nmods && !seen; j++) {
            char *other = realpath(s->mods[j].path, NULL);
            seen = real && other && strcmp(real, other) == 0;
            free(other);
        }
        free(real);
        if (seen)
            continue;
        uint32_t fid;
        if (!source_read_as(s->a, s->d, mp, shown, u->span, &fid))
            continue;
        AstNode *ast = parse_file(s->a, s->d, fid);
        add_module(s, mp, ast, fid);
        load_imports(s, ast, mp, depth + 1);
    }
}

static void add_decl(Sema *s, const char *name, const AstNode *node)
{
    Decl *prev = sema_find_decl(s, name);
    if (prev) {
        diag_error(s->d, node->span, "'%s' is defined twice", name);
        diag_note(s->d, prev->node->span, "the first definition is here");
        return;
    }
    if (sema_is_builtin(name)) {
        diag_error(s->d, node->span, "'%s' is the name of a primitive and cannot be redefined", name);
        return;
    }
    if (s->ndecls == s->capdecls) {
        uint32_t cap = s->capdecls ? s->capdecls * 2 : 32;
        s->decls = arena_grow(s->a, s->decls, sizeof(Decl) * s->ndecls, sizeof(Decl) * cap);
        s->capdecls = cap;
    }
    s->decls[s->ndecls++] = (Decl){ .name = name, .node = node };
}

static void collect_decls(Sema *s)
{
    for (uint32_t mi = 0; mi < s->nmods; mi++) {
        const AstNode *file = s->mods[mi].ast;
        for (uint32_t i = 0; i < file->u.file.decls.n; i++) {
            const AstNode *d = file->u.file.decls.items[i];
            if (d->kind == AST_BLOCK)
                add_decl(s, d->u.block.name, d);
            else if (d->kind == AST_CONST)
                add_decl(s, d->u.cdecl.name, d);
            else if (d->kind == AST_MODEL && mi == 0) {
                if (s->model) {
                    diag_error(s->d, d->span, "a file holds one model; '%s' is a second one", d->u.model.name);
                    diag_note(s->d, s->model->span, "the first model is here");
                } else {
                    s->model = d;
                }
            }
        }
    }
}

/* Parses a -D value as an int or a float literal. */
static bool parse_define(const char *text, Value *out)
{
    char *end;
    errno = 0;
    long long i = strtoll(text, &end, 10);
    if (*text && !*end && errno == 0) {
        *out = v_int(i);
        return true;
    }
    errno = 0;
    double d = strtod(text, &end);
    if (*text && !*end && errno == 0) {
        *out = v_float(d);
        return true;
    }
    return false;
}

static bool bind_hparams(Sema *s, Frame *f, const AstNode *model)
{
    const AstList *hp = &model->u.model.hparams;
    bool ok = true;
    for (uint32_t i = 0; i < s->o->ndefines; i++) {
        const SemaDefine *d = &s->o->defines[i];
        bool found = false;
        for (uint32_t j = 0; j < hp->n && !found; j++)
            found = strcmp(hp->items[j]->u.hparam.name, d->name) == 0;
        if (!found) {
            diag_error(s->d, model->span, "-D%s: model '%s' has no hyperparameter '%s'", d->name,
                       model->u.model.name, d->name);
            ok = false;
        }
    }
    for (uint32_t j = 0; j < hp->n; j++) {
        const AstNode *h = hp->items[j];
        Value v = v_none();
        bool set = false;
        for (uint32_t i = 0; i < s->o->ndefines; i++) {
            const SemaDefine *d = &s->o->defines[i];
            if (strcmp(d->name, h->u.hparam.name) != 0)
                continue;
            set = true;
            if (!parse_define(d->value, &v)) {
                diag_error(s->d, h->span, "-D%s=%s: the value must be an int or a float", d->name, d->value);
                ok = false;
            }
        }
        if (!set && !h->u.hparam.value) {
            diag_error(s->d, h->span, "hyperparameter '%s' has no default; give it with -D%s=VALUE",
                       h->u.hparam.name, h->u.hparam.name);
            ok = false;
            continue;
        }
        if (!set)
            v = sema_expr(s, f, h->u.hparam.value);
        if (v.kind != VK_NONE && v.kind != VK_INT && v.kind != VK_FLOAT && v.kind != VK_BOOL) {
            diag_error(s->d, h->span, "hyperparameter '%s' must be a number, found %s", h->u.hparam.name,
                       value_str(s, &v));
            v = v_none();
        }
        if (env_lookup(f->env, h->u.hparam.name)) {
            diag_error(s->d, h->span, "hyperparameter '%s' is listed twice", h->u.hparam.name);
            ok = false;
        }
        env_set(s, f->env, h->u.hparam.name, v, h->span);
    }
    return ok;
}

static void lower_model(Sema *s, const AstNode *model)
{
    s->m->name = model->u.model.name;
    Frame f = { 0 };
    f.fn = ir_add_func(s->m, "main", model->span);
    f.region = f.fn->body;
    f.env = env_new(s, NULL);
    f.is_model = true;
    if (!bind_hparams(s, &f, model))
        return;
    int errs = s->d->nerrors;
    sema_stmts(s, &f, &model->u.model.body);
    if (s->d->nerrors > errs)
        return;
    if (s->m->noutputs == 0) {
        diag_error(s->d, model->span, "model '%s' has no output; declare one with 'output NAME = ...'",
                   model->u.model.name);
        return;
    }
    IrValue **outs = ARENA_ARRAY(s->a, IrValue *, s->m->noutputs);
    for (uint32_t i = 0; i < s->m->noutputs; i++)
        outs[i] = s->m->outputs[i].value;
    ir_op_append(s->m, f.region, IR_OP_RETURN, outs, s->m->noutputs, 0, model->span);
}

bool sema_lower(Arena *a, DiagEngine *d, const AstNode *main_file, uint32_t main_file_id,
                const SemaOptions *o, IrModule *m)
{
    Sema s = { .a = a, .d = d, .m = m, .o = o };
    int errs0 = d->nerrors;
    const char *path = d->files[main_file_id].path;
    add_module(&s, path, main_file, main_file_id);
    load_imports(&s, main_file, path, 0);
    collect_decls(&s);
    if (d->nerrors > errs0)
        return false;
    if (!s.model) {
        diag_error(d, (SrcSpan){ 0 }, "%s: no model to compile (a file needs one 'model NAME(...) { ... }')", path);
        return false;
    }
    lower_model(&s, s.model);
    return d->nerrors == errs0;
}
