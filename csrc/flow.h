/* The compiled core of nsg-forwarder: flow tuples parsed into columns, and events rendered from them.
 *
 * Plain C over plain buffers (no Python here), so that the per-tuple loops run without the GIL and a
 * libFuzzer harness can drive them under AddressSanitizer. The Python code in forwarder/flowlog and
 * forwarder/formats is the reference: this core accepts only tuples it is sure the reference accepts
 * with the same values, and leaves every other one to it (nf_parse_tuple returns 0).
 */
#ifndef NF_FLOW_H
#define NF_FLOW_H

#include <stddef.h>
#include <stdint.h>

enum nf_layout { NF_NSG1 = 0, NF_NSG2 = 1, NF_VNET4 = 2 };
enum nf_format { NF_ECS = 0, NF_CEF = 1, NF_OCSF = 2, NF_ASIM = 3 };

/* One tuple as the parser read it; text pointers point into the caller's buffer. */
typedef struct {
    int64_t ts_ms;
    const char *src, *dst, *enc;
    size_t src_len, dst_len, enc_len;
    uint8_t src_bin[16], dst_bin[16];
    uint8_t v6, inbound, allowed, has_counters, proto;
    uint16_t sport, dport;
    char state; /* 0: the layout has no state (NSG version 1) */
    int64_t counters[4]; /* packets s2d, bytes s2d, packets d2s, bytes d2s */
} nf_tuple;

/* 1: accepted, values in *t. 0: not accepted here (bad, or a spelling only the reference should judge). */
int nf_parse_tuple(const char *s, size_t n, int layout, nf_tuple *t);

/* Row flags */
#define NF_V6 1u
#define NF_INBOUND 2u
#define NF_ALLOWED 4u
#define NF_COUNTERS 8u
#define NF_PYTHON 16u /* the reference parsed this tuple: its event lives on the Python side */
#define NF_DEAD 32u   /* neither parser accepted it: removed by nf_cols_compact */

/* The events of a batch, one column per field (a filter can select rows by reading one or two columns).
 * Rows of one rule group are consecutive; ``group`` indexes the batch's groups, ``variant`` its distinct
 * (flow state, encryption) pairs. Addresses are kept as written (text) and packed (for the Community ID). */
typedef struct {
    size_t n, cap;
    uint32_t *group;
    int64_t *index; /* the tuple's index in its record: the end of its event id */
    int64_t *ts_ms;
    uint32_t *src_off, *dst_off; /* into text */
    uint8_t *src_len, *dst_len;
    uint8_t (*src_bin)[16];
    uint8_t (*dst_bin)[16];
    uint16_t *sport, *dport;
    uint8_t *proto, *flags;
    char *state;
    uint16_t *variant;
    int64_t (*counters)[4];
    char *text;
    size_t text_len, text_cap;
} nf_cols;

int nf_cols_reserve(nf_cols *c, size_t rows); /* 0 on success, -1 out of memory */
/* Append a parsed tuple (needs room from nf_cols_reserve); -1 when out of memory or the text arena is full. */
int nf_cols_push(nf_cols *c, const nf_tuple *t, uint32_t group, int64_t index, uint16_t variant);
/* Append a placeholder for a tuple the reference must judge. */
int nf_cols_push_python(nf_cols *c, uint32_t group, int64_t index);
void nf_cols_compact(nf_cols *c); /* drop NF_DEAD rows, keeping the order */
/* Append row r of src (parsed or python) as a row of ``group`` (needs room from nf_cols_reserve); -1 when there is none. */
int nf_cols_copy_row(nf_cols *dst, const nf_cols *src, size_t r, uint32_t group);
void nf_cols_free(nf_cols *c);

/* Find the next tuple of a flowTuples array cut from JSON text: tuples are separated by '","' exactly
 * as forwarder/flowlog/bigrecord.py splits them. Returns the tuple's length; *next is where the one after
 * it starts, or end when it was the last. */
size_t nf_next_span_tuple(const char *text, size_t pos, size_t end, size_t *next);

/* The number of tuples in text[start, end), a flowTuples array from its opening to its closing quote,
 * when every quote in it is one of the two ends or part of a '","' separator and there is no backslash
 * (the form bigrecord.py cuts out of the text); -1 otherwise. */
long nf_count_span_tuples(const char *text, size_t start, size_t end);

/* "1:" + base64 of the SHA-1 of the flow, seed 0 (30 characters, no terminator). */
#define NF_CID_LEN 30
void nf_community_id(const uint8_t *a, const uint8_t *b, int v6, uint8_t proto, uint16_t sport, uint16_t dport,
                     char out[NF_CID_LEN]);
/* The same with the portable SHA-1 when ``portable`` (the fuzzer holds the two to the same digests). */
void nf_community_id_with(const uint8_t *a, const uint8_t *b, int v6, uint8_t proto, uint16_t sport, uint16_t dport,
                          char out[NF_CID_LEN], int portable);
/* Pick the fastest SHA-1 this CPU runs; call once before any other nf_ function. */
void nf_init(void);
/* 1 when SHA-1 runs on the CPU's SHA instructions: then hashing a flow costs less than looking it up. */
int nf_sha1_is_fast(void);

/* Text rendered once per rule group (g), per rule group and variant (gv) and per call (glob) by the
 * Python formatters; the layouts are listed in render.c. */
typedef struct {
    const char *p;
    size_t n;
} nf_str;

typedef struct {
    const nf_str *g;
    size_t g_stride;
    const nf_str *gv;
    size_t gv_stride, nvariants;
    const nf_str *glob;
    const char *const *prefix; /* event id prefix per group (NUL-terminated hex) */
    const size_t *prefix_len;
    uint32_t group0; /* group index of g[0] */
    size_t max_piece; /* an upper bound of one row's constant text, for one reservation per row */
} nf_pieces;

typedef struct {
    char *p;
    size_t n, cap;
    int fixed; /* p is not ours to grow (a bytes object sized for the worst case) */
} nf_buf;

int nf_buf_reserve(nf_buf *b, size_t more);

/* What one render call remembers between rows: Community IDs of the flows seen (B, C and E tuples
 * of a flow share one), and the text of the last second. */
typedef struct {
    uint8_t key[40];
    char cid[NF_CID_LEN];
    uint8_t used;
} nf_cid_slot;

#define NF_CID_SLOTS 16384
typedef struct {
    nf_cid_slot *cid; /* NF_CID_SLOTS zeroed slots, or NULL for no cache */
    int64_t last_sec;
    char iso[32];
    size_t iso_len;
} nf_scratch;

/* Room to leave per row beyond nf_pieces.max_piece. */
#define NF_ROW_VALUES 1024

/* Render row ``row`` in format ``fmt`` at the end of ``out``; -1 when out of memory. */
int nf_render_row(int fmt, const nf_cols *c, size_t row, const nf_pieces *pc, nf_scratch *sc, nf_buf *out);

#endif
