/* libFuzzer harness for the compiled core's pure-C parts (flow.c, render.c, community_id.c, reduce.c), built
 * with AddressSanitizer and UndefinedBehaviorSanitizer by .ci/run:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc \
 *         csrc/fuzz/fuzz_flow.c csrc/flow.c csrc/render.c csrc/community_id.c csrc/reduce.c -o fuzz_flow
 *
 * Input: one byte choosing the tuple layout and the output format (ECS, CEF, OCSF or ASIM), then text read the way production
 * reads it: every "flowTuples":[...] array found in it is counted (nf_count_span_tuples) and split
 * (nf_next_span_tuple) as bigrecord.py and Events.add_span do; when there is none, the text is split on
 * newlines into tuple strings as add_list gets them. Every accepted tuple is pushed into columns and
 * rendered. Beyond memory errors and undefined behaviour, the harness aborts when a rendered line is not
 * one line of printable ASCII, outgrows its reservation, or when an address the parser accepted is not
 * what inet_pton makes of it. The rows are then copied (nf_cols_copy_row, what a filter's kept rows go
 * through), filtered with rules on every column, and aggregated under several keys: the harness aborts when
 * a copy differs, when a filter verdict differs from a plain re-evaluation of the rules, or when a key does
 * not read back as written or the sums do not add up.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"
#include "reduce.h"

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
static nf_str GLOB[1280]; /* the most any format takes (ASIM) */
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

/* -- Reduction ------------------------------------------------------------------------------------------- */

/* 10.0.0.0/8 and 172.16.0.0/12; fc00::/7: ranges as addresses.py hands them over. */
static const uint8_t RANGES_V4[] = {10, 0, 0, 0, 10, 255, 255, 255, 172, 16, 0, 0, 172, 31, 255, 255};
static const uint8_t RANGES_V6[] = {0xfc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                    0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static uint8_t PORTS[65536]; /* 0-1023 and 443 */

/* The same question as nf_addrs_has, the slow way. */
static int plain_has(const nf_addrs *a, const uint8_t *bin, int v6) {
    size_t w = v6 ? 16 : 4, n = v6 ? a->n6 : a->n4;
    const uint8_t *r = v6 ? a->v6 : a->v4;
    for (size_t i = 0; i < n; i++)
        if (memcmp(r + 2 * w * i, bin, w) <= 0 && memcmp(bin, r + 2 * w * i + w, w) <= 0) return 1;
    return 0;
}

static int plain_matches(const nf_rule *rule, const nf_cols *c, size_t r, int ctx_ok) {
    unsigned has = rule->has;
    int v6 = (c->flags[r] & NF_V6) != 0;
    unsigned state = c->state[r] == 'B' ? 1 : c->state[r] == 'C' ? 2 : c->state[r] == 'E' ? 4 : c->state[r] == 'D' ? 8 : 0;
    return (!(has & NF_C_CONTEXT) || ctx_ok) &&
           (!(has & NF_C_DECISION) || rule->decisions & ((c->flags[r] & NF_ALLOWED) ? 2 : 1)) &&
           (!(has & NF_C_DIRECTION) || rule->directions & ((c->flags[r] & NF_INBOUND) ? 2 : 1)) &&
           (!(has & NF_C_STATE) || (rule->states & state)) && (!(has & NF_C_PROTOCOL) || rule->protocols[c->proto[r]]) &&
           (!(has & NF_C_SRC) || plain_has(&rule->src, c->src_bin[r], v6)) &&
           (!(has & NF_C_DST) || plain_has(&rule->dst, c->dst_bin[r], v6)) &&
           (!(has & NF_C_ADDRESS) || plain_has(&rule->address, c->src_bin[r], v6) ||
            plain_has(&rule->address, c->dst_bin[r], v6)) &&
           (!(has & NF_C_SRC_PORT) || rule->src_port[c->sport[r]]) &&
           (!(has & NF_C_DST_PORT) || rule->dst_port[c->dport[r]]) &&
           (!(has & NF_C_PORT) || rule->port[c->sport[r]] || rule->port[c->dport[r]]);
}

static void check_copy(const nf_cols *c) {
    nf_cols d = {0};
    CHECK(nf_cols_reserve(&d, c->n) == 0);
    for (size_t r = 0; r < c->n; r++) {
        CHECK(nf_cols_copy_row(&d, c, r, 7) == 0);
        CHECK(d.group[r] == 7 && d.index[r] == c->index[r] && d.ts_ms[r] == c->ts_ms[r] && d.flags[r] == c->flags[r]);
        CHECK(d.src_len[r] == c->src_len[r] && memcmp(d.text + d.src_off[r], c->text + c->src_off[r], c->src_len[r]) == 0);
        CHECK(d.dst_len[r] == c->dst_len[r] && memcmp(d.text + d.dst_off[r], c->text + c->dst_off[r], c->dst_len[r]) == 0);
        CHECK(memcmp(d.src_bin[r], c->src_bin[r], 16) == 0 && memcmp(d.dst_bin[r], c->dst_bin[r], 16) == 0);
        CHECK(d.sport[r] == c->sport[r] && d.dport[r] == c->dport[r] && d.proto[r] == c->proto[r]);
        CHECK(d.state[r] == c->state[r] && d.variant[r] == c->variant[r]);
        CHECK(memcmp(d.counters[r], c->counters[r], sizeof(d.counters[r])) == 0);
    }
    nf_cols_free(&d);
}

static void check_filter(const nf_cols *c, uint8_t choice) {
    nf_addrs private = {RANGES_V4, 2, RANGES_V6, 1};
    nf_rule rules[3];
    memset(rules, 0, sizeof(rules));
    rules[0].has = NF_C_DECISION | NF_C_STATE | NF_C_SRC;
    rules[0].decisions = 2;
    rules[0].states = 1 | 4 | 8;
    rules[0].src = private;
    rules[1].has = NF_C_PORT | NF_C_PROTOCOL | NF_C_CONTEXT | NF_C_DST;
    rules[1].protocols[6] = rules[1].protocols[17] = 1;
    rules[1].port = PORTS;
    rules[1].dst = private;
    rules[2].has = NF_C_ADDRESS | NF_C_DIRECTION | NF_C_DST_PORT | NF_C_SRC_PORT;
    rules[2].directions = 1;
    rules[2].address = private;
    rules[2].dst_port = rules[2].src_port = PORTS;
    nf_filter f = {rules, choice & 2 ? 0 : 2, 1};
    const nf_rule *active = choice & 2 ? rules + 2 : rules;
    nf_filter g = {active, f.ninclude, f.nexclude};
    uint8_t ok[3] = {1, choice & 1, 1};
    uint32_t *reason = malloc((c->n + 1) * sizeof(uint32_t));
    CHECK(reason != NULL);
    nf_filter_rows(&g, c, 0, c->n, ok, 0, reason);
    for (size_t r = 0; r < c->n; r++) {
        uint32_t want = 0;
        if (g.ninclude) {
            want = 1;
            for (size_t k = 0; k < g.ninclude; k++)
                if (plain_matches(&active[k], c, r, ok[k])) want = 0;
        }
        if (want == 0 && plain_matches(&active[g.ninclude], c, r, ok[g.ninclude])) want = 2;
        CHECK(reason[r] == want);
    }
    free(reason);
}

static void check_aggregate(const nf_cols *c, unsigned fields, uint64_t seed) {
    nf_agg a = {0};
    a.fields = fields;
    a.k0 = seed;
    a.k1 = ~seed;
    for (size_t r = 0; r < c->n; r++) {
        int created;
        nf_acc *acc;
        CHECK(nf_agg_add_row(&a, c, r, (uint32_t)(r % 3), &created, &acc) == 0);
    }
    int64_t flows = 0;
    for (size_t i = 0; i < a.n; i++) {
        const nf_acc *acc = &a.acc[i];
        nf_key k;
        uint8_t again[4 + 2 + 39 + 2 + 39 + 2 + 2 + 3];
        CHECK(nf_key_decode(fields, a.keys + acc->key_off, acc->key_len, &k));
        CHECK(k.src_len <= 39 && k.dst_len <= 39);
        CHECK(nf_key_encode(fields, &k, again) == acc->key_len && memcmp(again, a.keys + acc->key_off, acc->key_len) == 0);
        int created;
        CHECK(nf_agg_find(&a, again, acc->key_len, 0, &created) == acc && !created);
        CHECK(acc->first_ms <= acc->last_ms && acc->flows > 0 && acc->denied <= acc->flows);
        CHECK(acc->started + acc->continuing + acc->ended <= acc->flows);
        flows += acc->flows;
    }
    CHECK(flows == (int64_t)c->n);
    nf_agg_free(&a);
}

static void check_reduce(const nf_cols *c, uint8_t choice, uint64_t seed) {
    if (!PORTS[443]) {
        memset(PORTS, 1, 1024);
        PORTS[443] = 1;
    }
    check_copy(c);
    check_filter(c, choice);
    static const unsigned KEYS[] = {NF_K_ALL, 1 | 2 | 8 | 16 | 32 | 64 | 128 | 256, NF_K_SRC_IP, NF_K_CONTEXT, NF_K_DST_PORT};
    for (size_t i = 0; i < sizeof(KEYS) / sizeof(KEYS[0]); i++) check_aggregate(c, KEYS[i], seed);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    nf_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int layout = data[0] % 3, fmt = (data[0] / 3) % 4; /* ECS, CEF, OCSF, ASIM */
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
    check_reduce(&c, data[0], (uint64_t)size * 0x9E3779B97F4A7C15ull);
    if (GLOB[0].p == NULL)
        for (int i = 0; i < 1280; i++) GLOB[i] = (nf_str)S(",\"transport\":\"tcp\"");
    size_t max_piece = 0;
    for (int i = 0; i < 5; i++) max_piece += PIECE_G[i].n;
    for (int i = 0; i < 3; i++) max_piece += PIECE_GV[i].n;
    max_piece += 3 * GLOB[0].n + PREFIX_LEN[0]; /* ASIM splices up to three global pieces per row */
    static const size_t G_STRIDE[] = {5, 2, 3, 4};
    nf_pieces pc = {PIECE_G, G_STRIDE[fmt], PIECE_GV, 3, 1, GLOB, PREFIX, PREFIX_LEN, 0,
                    max_piece};
    nf_buf buf = {0};
    nf_cid_slot *slots = calloc(NF_CID_SLOTS, sizeof(nf_cid_slot));
    nf_scratch sc = {0};
    sc.cid = (data[0] & 0x80) ? NULL : slots;
    for (size_t r = 0; r < c.n; r++) {
        size_t before = buf.n;
        /* ASIM looks the ICMP type up in a table of 256: the parser leaves bigger ones to the reference. */
        if (c.proto[r] == 1 || c.proto[r] == 58) CHECK(c.sport[r] <= 255 && c.dport[r] <= 255);
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
