/*
 * timerheap.h: a binary min-heap of timer nodes ordered by (key, seq).
 *
 * Pure C, no Python API.  The heap stores pointers to nodes embedded in
 * their owners; each node records its own position, so a node can be
 * removed from the middle in O(log n).  That is what keeps cancelled
 * timers from piling up: cancel removes the node at once.
 */
#ifndef CLOOP_TIMERHEAP_H
#define CLOOP_TIMERHEAP_H

#include <stddef.h>
#include <stdint.h>

#define CL_TIMER_NOT_IN_HEAP SIZE_MAX

typedef struct {
    double key;                 /* deadline; never NaN */
    uint64_t seq;               /* scheduling order, breaks ties */
    size_t index;               /* position, or CL_TIMER_NOT_IN_HEAP */
} cl_timer_node;

typedef struct {
    cl_timer_node **nodes;
    size_t len;
    size_t cap;
} cl_timerheap;

/* Add node (not already in a heap).  Returns 0, or -1 when memory runs
 * out, in which case the heap is unchanged. */
int cl_timerheap_push(cl_timerheap *heap, cl_timer_node *node);

/* The earliest node, or NULL when the heap is empty. */
static inline cl_timer_node *
cl_timerheap_peek(const cl_timerheap *heap)
{
    return heap->len ? heap->nodes[0] : NULL;
}

/* Remove and return the earliest node, or NULL when the heap is empty. */
cl_timer_node *cl_timerheap_pop(cl_timerheap *heap);

/* Remove node, which must be in this heap. */
void cl_timerheap_remove(cl_timerheap *heap, cl_timer_node *node);

/* Release the heap's array.  Nodes are not touched. */
void cl_timerheap_free(cl_timerheap *heap);

#endif /* CLOOP_TIMERHEAP_H */
