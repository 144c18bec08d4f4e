/* libFuzzer harness for the compiled core's pure-C parts (flow.c, render.c, community_id.c), built with
 * AddressSanitizer and UndefinedBehaviorSanitizer by .ci/run:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc \
 *         csrc/fuzz/fuzz_flow.c csrc/flow.c csrc/render.c csrc/community_id.c -o fuzz_flow
 *
 * Input: one byte choosing the tuple layout and the output format, then text read the way production
 * reads it: every "flowTuples":[...] array found in it is counted (nf_count_span_tuples) and split
 * (nf_next_span_tuple) as bigrecord.py and Events.add_span do; when there is none, the text is split on
 * newlines into tuple strings as add_list gets them. Every accepted tuple is pushed into columns and
 * rendered. Beyond memory errors and undefined behaviour, the harness aborts when a rendered line is not
 * one line of printable ASCII, outgrows its reservation, or when an address the parser accepted is not
 * what inet_pton makes of it.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_flow: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define S(lit) {lit, sizeof(lit) - 1}
static const nf_str PIECE_G[5] = {S("},\"destination\":{\"ip\":\""), S("},\"network\":{\"direction\":\"inbound\","),
                                  S(",\"mac\":\"00-0D-3A-F8-78-56\"},\"destination\":{\"ip\":\""),
                                  S("},\"network\":{\"direction\":\"outbound\","), S(",\"rule\":{\"name\":\"r\"}")};
static const nf_str PIECE_GV[3] = {S("\"kind\":\"event\",\"id\":\""), S("\"kind\":\"denied\",\"id\":\""),
                                   S(",\"state\":\"C\"")};
static nf_str GLOB[512];
static const char *PREFIX[1] = {"0123456789abcdef01234567"};
static const size_t PREFIX_LEN[1] = {24};

static void check_address(const char *text, size_t n, const uint8_t *bin, int v6) {
    char z[64];
    uint8_t want[16];
    CHECK(n < sizeof(z));
    memcpy(z, text, n);
    z[n] = 0;
    CHECK(inet_pton(v6 ? AF_INET6 : AF_INET, z, want) == 1);
    CHECK(memcmp(want, bin, v6 ? 16 : 4) == 0);
}

static void take(nf_cols *c, const char *s, size_t n, int layout) {
    nf_tuple t;
    if (nf_cols_reserve(c, 1)) abort();
    if (nf_parse_tuple(s, n, layout, &t)) {
        check_address(t.src, t.src_len, t.src_bin, t.v6);
        check_address(t.dst, t.dst_len, t.dst_bin, t.v6);
        char fast[NF_CID_LEN], portable[NF_CID_LEN];
        nf_community_id_with(t.src_bin, t.dst_bin, t.v6, t.proto, t.sport, t.dport, fast, 0);
        nf_community_id_with(t.src_bin, t.dst_bin, t.v6, t.proto, t.sport, t.dport, portable, 1);
        CHECK(memcmp(fast, portable, NF_CID_LEN) == 0);
        CHECK(nf_cols_push(c, &t, 0, (int64_t)c->n, 0) == 0);
    } else {
        CHECK(nf_cols_push_python(c, 0, (int64_t)c->n) == 0);
        c->flags[c->n - 1] |= NF_DEAD;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    nf_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int layout = data[0] % 3, fmt = (data[0] / 3) % 3;
    const char *text = (const char *)data + 1;
    size_t n = size - 1, arrays = 0;
    nf_cols c = {0};
    static const char KEY[] = "\"flowTuples\":[";
    for (size_t pos = 0; pos + sizeof(KEY) - 1 <= n;) {
        const char *key = memmem(text + pos, n - pos, KEY, sizeof(KEY) - 1);
        if (key == NULL) break;
        size_t open = (size_t)(key - text) + sizeof(KEY) - 1;
        const char *close = memchr(text + open, ']', n - open);
        if (close == NULL) break;
        size_t end = (size_t)(close - text);
        arrays++;
        long count = end > open ? nf_count_span_tuples(text, open, end) : 0;
        size_t at = open + 1;
        for (long i = 0; i < count; i++) {
            size_t next, len = nf_next_span_tuple(text, at, end - 1, &next);
            CHECK(at + len <= end - 1 && next <= end - 1 && next >= at);
            take(&c, text + at, len, layout);
            at = next;
        }
        pos = end + 1;
    }
    if (arrays == 0) {
        for (size_t start = 0; start <= n;) {
            const char *nl = memchr(text + start, '\n', n - start);
            size_t end = nl ? (size_t)(nl - text) : n;
            take(&c, text + start, end - start, layout);
            start = end + 1;
        }
    }
    nf_cols_compact(&c);
    for (size_t r = 0; r < c.n; r++) CHECK(!(c.flags[r] & NF_DEAD));
    if (GLOB[0].p == NULL)
        for (int i = 0; i < 512; i++) GLOB[i] = (nf_str)S(",\"transport\":\"tcp\"");
    size_t max_piece = 0;
    for (int i = 0; i < 5; i++) max_piece += PIECE_G[i].n;
    for (int i = 0; i < 3; i++) max_piece += PIECE_GV[i].n;
    max_piece += GLOB[0].n + PREFIX_LEN[0];
    nf_pieces pc = {PIECE_G, fmt == NF_ECS ? 5 : fmt == NF_CEF ? 2 : 3, PIECE_GV, 3, 1, GLOB, PREFIX, PREFIX_LEN, 0,
                    max_piece};
    nf_buf buf = {0};
    nf_cid_slot *slots = calloc(NF_CID_SLOTS, sizeof(nf_cid_slot));
    nf_scratch sc = {0};
    sc.cid = (data[0] & 0x80) ? NULL : slots;
    for (size_t r = 0; r < c.n; r++) {
        size_t before = buf.n;
        CHECK(nf_render_row(fmt, &c, r, &pc, &sc, &buf) == 0);
        CHECK(buf.n - before <= max_piece + NF_ROW_VALUES - 1);
        for (size_t i = before; i < buf.n; i++) {
            if (!(buf.p[i] >= 0x20 && buf.p[i] < 0x7f)) fprintf(stderr, "row %zu: %.*s\n", r, (int)(buf.n - before), buf.p + before);
            CHECK(buf.p[i] >= 0x20 && buf.p[i] < 0x7f);
        }
    }
    free(slots);
    free(buf.p);
    nf_cols_free(&c);
    return 0;
}
