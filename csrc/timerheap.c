/*
 * timerheap.c: the binary min-heap behind call_later()/call_at().
 *
 * One heap per loop replaces one libuv timer per call: the loop arms a
 * single uv_timer_t for the earliest node.  Nodes carry their index so
 * cancel is a removal, not a tombstone, and the array shrinks when it is
 * mostly empty, so memory follows the number of live timers.
 */
#include <stdlib.h>

#include "timerheap.h"

#define MIN_CAP 64

static inline int
node_less(const cl_timer_node *a, const cl_timer_node *b)
{
    if (a->key != b->key) {
        return a->key < b->key;
    }
    return a->seq < b->seq;
}

static inline void
place(cl_timerheap *heap, size_t i, cl_timer_node *node)
{
    heap->nodes[i] = node;
    node->index = i;
}

static void
sift_up(cl_timerheap *heap, size_t i)
{
    cl_timer_node *node = heap->nodes[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!node_less(node, heap->nodes[parent])) {
            break;
        }
        place(heap, i, heap->nodes[parent]);
        i = parent;
    }
    place(heap, i, node);
}

static void
sift_down(cl_timerheap *heap, size_t i)
{
    cl_timer_node *node = heap->nodes[i];
    size_t len = heap->len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= len) {
            break;
        }
        if (child + 1 < len &&
            node_less(heap->nodes[child + 1], heap->nodes[child])) {
            child++;
        }
        if (!node_less(heap->nodes[child], node)) {
            break;
        }
        place(heap, i, heap->nodes[child]);
        i = child;
    }
    place(heap, i, node);
}

static int
resize(cl_timerheap *heap, size_t cap)
{
    cl_timer_node **nodes = realloc(heap->nodes, cap * sizeof(*nodes));
    if (nodes == NULL) {
        return -1;
    }
    heap->nodes = nodes;
    heap->cap = cap;
    return 0;
}

int
cl_timerheap_push(cl_timerheap *heap, cl_timer_node *node)
{
    if (heap->len == heap->cap) {
        size_t cap = heap->cap ? heap->cap * 2 : MIN_CAP;
        if (cap < heap->cap || resize(heap, cap) < 0) {
            return -1;
        }
    }
    heap->nodes[heap->len] = node;
    sift_up(heap, heap->len++);
    return 0;
}

/* Give memory back once the heap is a quarter full.  Failure to shrink is
 * harmless: the larger array stays. */
static void
maybe_shrink(cl_timerheap *heap)
{
    if (heap->cap > MIN_CAP && heap->len < heap->cap / 4) {
        (void)resize(heap, heap->cap / 2);
    }
}

void
cl_timerheap_remove(cl_timerheap *heap, cl_timer_node *node)
{
    size_t i = node->index;
    cl_timer_node *last = heap->nodes[--heap->len];
    node->index = CL_TIMER_NOT_IN_HEAP;
    if (last != node) {
        /* The last node fills the hole and moves whichever way restores
         * the order. */
        place(heap, i, last);
        if (i > 0 && node_less(last, heap->nodes[(i - 1) / 2])) {
            sift_up(heap, i);
        }
        else {
            sift_down(heap, i);
        }
    }
    maybe_shrink(heap);
}

cl_timer_node *
cl_timerheap_pop(cl_timerheap *heap)
{
    if (heap->len == 0) {
        return NULL;
    }
    cl_timer_node *top = heap->nodes[0];
    cl_timerheap_remove(heap, top);
    return top;
}

void
cl_timerheap_free(cl_timerheap *heap)
{
    free(heap->nodes);
    heap->nodes = NULL;
    heap->len = heap->cap = 0;
}
