/* source.h - reading source files into the compile session: the whole file into the
 * arena, registered with the DiagEngine so spans can be quoted. Rejects directories,
 * missing or unreadable files and files over the size limit with one clear error. */
#ifndef TFX_FRONT_SOURCE_H
#define TFX_FRONT_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "diag.h"

enum { SOURCE_MAX_BYTES = 64 * 1024 * 1024 };

/* On success stores the DiagEngine file index in *file_id and returns true. On failure
 * reports `tfxc: error: cannot read 'PATH': REASON` (or at `from`, when the read was
 * caused by a `use` at that span) and returns false. */
bool source_read(Arena *a, DiagEngine *d, const char *path, SrcSpan from, uint32_t *file_id);
/* The same, but messages name the file `shown` (e.g. "stdlib/nn.tfx" for a standard
 * library module, so output holds no absolute paths). */
bool source_read_as(Arena *a, DiagEngine *d, const char *path, const char *shown, SrcSpan from,
                    uint32_t *file_id);
/* Registers an in-memory source (tests, fuzzing); text is copied into the arena. */
uint32_t source_add_string(Arena *a, DiagEngine *d, const char *path, const char *text, uint32_t len);

#endif
