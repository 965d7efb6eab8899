/* arena.h - bump allocator that owns every AST node, IR object and string of one
 * compilation. Freed in one call; nothing allocated from it is freed alone.
 * Used by front/, ir/ and passes/. */
#ifndef TFX_BASE_ARENA_H
#define TFX_BASE_ARENA_H

#include <stddef.h>

typedef struct ArenaChunk ArenaChunk;

typedef struct Arena {
    ArenaChunk *head;  /* newest chunk first */
    size_t      total; /* bytes handed out, for statistics */
} Arena;

void  arena_init(Arena *a);
void  arena_dispose(Arena *a);
/* Returns zeroed memory aligned for any object; aborts on out-of-memory. */
void *arena_alloc(Arena *a, size_t size);
/* Copies the old contents into a new, larger allocation (old is left in place). */
void *arena_grow(Arena *a, void *old, size_t old_size, size_t new_size);
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ARENA_NEW(a, T)        ((T *)arena_alloc((a), sizeof(T)))
#define ARENA_ARRAY(a, T, n)   ((T *)arena_alloc((a), sizeof(T) * (size_t)(n)))

#endif
