/* rt_plan.c - the workspace plan of code compiled at -O1 and above: given each buffer's
 * size (known when the model runs, since shapes are symbolic) and its live interval
 * (fixed by the compiler: the positions of the op that first writes it and the last op
 * that reads it, docs/codegen.md "Memory plan"), place buffers whose intervals overlap at
 * disjoint offsets and let the others share memory. No arithmetic on tensors: generated
 * code calls it once per forward, before any op runs.
 *
 * Greedy by size: buffers are placed largest first (ties by index, so the plan is a pure
 * function of the sizes), each at the lowest 64-byte-aligned offset where it overlaps no
 * already placed buffer that is live at the same time. O(n^2 log n) for n buffers. */
#include <stdint.h>

#include "tfx_abi.h"

enum { PLAN_ALIGN = 64 };

static int64_t align_up(int64_t x)
{
    return (x + PLAN_ALIGN - 1) & -(int64_t)PLAN_ALIGN;
}

/* Sorts idx[0 .. n) by key descending, ties by index ascending (insertion sort: the lists
 * are short and often nearly sorted). */
static void sort_desc(int32_t *idx, int64_t n, const int64_t *key)
{
    for (int64_t i = 1; i < n; i++) {
        int32_t v = idx[i];
        int64_t j = i;
        while (j > 0 && (key[idx[j - 1]] < key[v] || (key[idx[j - 1]] == key[v] && idx[j - 1] > v))) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

int64_t tfx_plan_offsets(int64_t n, const int64_t *size, const int32_t *start,
                         const int32_t *end, int64_t *offset, int32_t *scratch)
{
    int32_t *order = scratch, *live = scratch + n;   // 2n entries
    for (int64_t i = 0; i < n; i++)
        order[i] = (int32_t)i;
    sort_desc(order, n, size);
    int64_t total = 0;
    for (int64_t k = 0; k < n; k++) {
        int32_t b = order[k];
        // the placed buffers live at the same time as b, by offset ascending
        int64_t nl = 0;
        for (int64_t q = 0; q < k; q++) {
            int32_t o = order[q];
            if (start[o] <= end[b] && start[b] <= end[o] && size[o] > 0) {
                int64_t j = nl++;
                while (j > 0 && offset[live[j - 1]] > offset[o]) {
                    live[j] = live[j - 1];
                    j--;
                }
                live[j] = o;
            }
        }
        int64_t at = 0;
        for (int64_t j = 0; j < nl; j++) {   // first gap that fits
            int32_t o = live[j];
            if (offset[o] >= at + size[b])
                break;
            int64_t e = align_up(offset[o] + size[o]);
            if (e > at)
                at = e;
        }
        offset[b] = at;
        if (align_up(at + size[b]) > total)
            total = align_up(at + size[b]);
    }
    return total;
}
