/*
 * Strict request/ACK MLLP load generator: one blocking thread per connection, each sends a frame and
 * waits for the complete reply frame before sending the next (the normal MLLP pattern).
 * Every frame gets its own MSH-10 (the message's control id is overwritten in place, same width), and
 * a reply counts as good only when its MSA-1 is AA/CA and its MSA-2 is exactly that control id.
 *
 * usage: loadgen HOST PORT CONNS SECONDS MESSAGE_FILE [WARMUP_SECONDS]
 * prints one JSON line: {"conns":..,"msgs":..,"seconds":..,"msgs_per_s":..,"p50_us":..,"p99_us":..,
 *                        "max_us":..,"errors":..,"all_msgs":..}   (all_msgs includes warm-up)
 * Written in C so that the load generator is never the bottleneck being measured.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (4u << 20)

static const char *g_host;
static int g_port;
static unsigned char *g_frame;
static size_t g_frame_len;
static atomic_int g_phase; /* 0 warmup, 1 measure, 2 stop */
static size_t g_id_off, g_id_len; /* MSH-10 inside g_frame */

typedef struct {
    int index;
    uint32_t *lat_us;
    size_t n;
    long all; /* exchanges including warm-up, for CPU cost per message */
    long errors;
} worker_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int connect_one(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    inet_pton(AF_INET, g_host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Is there "MSA|A?|<id>" followed by '|' or CR in the reply? */
static int msa_matches(const unsigned char *buf, size_t have, const unsigned char *id, size_t id_len) {
    const unsigned char *msa = memmem(buf, have, "MSA|", 4);
    if (msa == NULL) return 0;
    size_t rest = have - (size_t)(msa - buf);
    if (rest < 8 + id_len) return 0;
    if (!(msa[4] == 'A' || msa[4] == 'C') || msa[5] != 'A' || msa[6] != '|') return 0;
    if (memcmp(msa + 7, id, id_len) != 0) return 0;
    unsigned char after = msa[7 + id_len]; /* simple-hl7 ends its last segment without CR */
    return after == '|' || after == 0x0d || after == 0x1c;
}

static void *run(void *arg) {
    worker_t *w = arg;
    int fd = connect_one();
    unsigned char buf[65536];
    unsigned char *frame = malloc(g_frame_len);
    memcpy(frame, g_frame, g_frame_len);
    unsigned long seq = 0, modulo = 1;
    for (size_t i = 3; i < g_id_len && modulo < 100000000ul; i++) modulo *= 10;
    while (atomic_load(&g_phase) < 2) {
        /* control id: 'C', two digits of connection, the rest a zero-padded counter */
        char id[64];
        snprintf(id, sizeof id, "C%02d%0*lu", w->index % 100, (int)(g_id_len - 3), seq++ % modulo);
        memcpy(frame + g_id_off, id, g_id_len);
        double t0 = now_s();
        size_t off = 0;
        while (off < g_frame_len) {
            ssize_t k = write(fd, frame + off, g_frame_len - off);
            if (k <= 0) { perror("write"); exit(3); }
            off += (size_t)k;
        }
        /* read until the reply's end block: 0x1C 0x0D at the end of what we have */
        size_t have = 0;
        for (;;) {
            ssize_t k = read(fd, buf + have, sizeof buf - have);
            if (k <= 0) { perror("read"); exit(4); }
            have += (size_t)k;
            if (have >= 2 && buf[have - 2] == 0x1c && buf[have - 1] == 0x0d) break;
            if (have == sizeof buf) { fprintf(stderr, "reply too large\n"); exit(5); }
        }
        if (buf[0] != 0x0b || !msa_matches(buf, have, frame + g_id_off, g_id_len)) w->errors++;
        double t1 = now_s();
        w->all++;
        if (atomic_load(&g_phase) == 1 && w->n < MAX_SAMPLES)
            w->lat_us[w->n++] = (uint32_t)((t1 - t0) * 1e6 + 0.5);
    }
    close(fd);
    free(frame);
    return NULL;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST PORT CONNS SECONDS MESSAGE_FILE [WARMUP]\n", argv[0]);
        return 1;
    }
    g_host = argv[1];
    g_port = atoi(argv[2]);
    int conns = atoi(argv[3]);
    double seconds = atof(argv[4]);
    double warmup = argc > 6 ? atof(argv[6]) : 0.5;
    FILE *f = fopen(argv[5], "rb");
    if (!f) { perror("message file"); return 1; }
    unsigned char msg[1 << 16];
    size_t len = fread(msg, 1, sizeof msg, f);
    fclose(f);
    g_frame = malloc(len + 3);
    g_frame[0] = 0x0b;
    memcpy(g_frame + 1, msg, len);
    g_frame[len + 1] = 0x1c;
    g_frame[len + 2] = 0x0d;
    g_frame_len = len + 3;
    /* MSH-10 starts after the 9th field separator of the MSH segment */
    size_t bars = 0, i = 1;
    for (; i < g_frame_len && bars < 9; i++) if (g_frame[i] == '|') bars++;
    g_id_off = i;
    while (i < g_frame_len && g_frame[i] != '|' && g_frame[i] != 0x0d) i++;
    g_id_len = i - g_id_off;
    if (g_id_len < 6 || g_id_len > 20) { fprintf(stderr, "MSH-10 must be 6-20 characters\n"); return 1; }

    pthread_t *th = calloc((size_t)conns, sizeof *th);
    worker_t *ws = calloc((size_t)conns, sizeof *ws);
    for (int i = 0; i < conns; i++) {
        ws[i].index = i;
        ws[i].lat_us = malloc(MAX_SAMPLES * sizeof(uint32_t));
        pthread_create(&th[i], NULL, run, &ws[i]);
    }
    usleep((useconds_t)(warmup * 1e6));
    atomic_store(&g_phase, 1);
    double t0 = now_s();
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&g_phase, 2);
    double elapsed = now_s() - t0;
    for (int i = 0; i < conns; i++) pthread_join(th[i], NULL);

    size_t total = 0;
    long errors = 0, all_msgs = 0;
    for (int i = 0; i < conns; i++) { total += ws[i].n; errors += ws[i].errors; all_msgs += ws[i].all; }
    uint32_t *all = malloc((total ? total : 1) * sizeof(uint32_t));
    size_t k = 0;
    for (int i = 0; i < conns; i++) {
        memcpy(all + k, ws[i].lat_us, ws[i].n * sizeof(uint32_t));
        k += ws[i].n;
    }
    qsort(all, total, sizeof(uint32_t), cmp_u32);
    uint32_t p50 = total ? all[total / 2] : 0;
    uint32_t p99 = total ? all[(size_t)(total * 0.99)] : 0;
    uint32_t mx = total ? all[total - 1] : 0;
    printf("{\"conns\":%d,\"msgs\":%zu,\"seconds\":%.3f,\"msgs_per_s\":%.1f,"
           "\"p50_us\":%u,\"p99_us\":%u,\"max_us\":%u,\"errors\":%ld,\"all_msgs\":%ld}\n",
           conns, total, elapsed, total / elapsed, p50, p99, mx, errors, all_msgs);
    return 0;
}
