/* parse.h - glue around grammar/: owns the reentrant flex scanner, runs the pure bison
 * parser over one registered source file and returns its AST. Called by sema when it
 * loads the main file and every `use`d module. */
#ifndef TFX_FRONT_PARSE_H
#define TFX_FRONT_PARSE_H

#include "ast.h"

/* Parses file `file_id` (already added to d). Always returns an AST_FILE node; after
 * syntax errors it holds what could be recovered. Errors go to d (d->nerrors grows). */
AstNode *parse_file(Arena *a, DiagEngine *d, uint32_t file_id);

#endif
