/*
 * rtp_load: both ends of N G.711 calls on loopback, for bench/media.py.
 *
 * Each call has a LiveVox end (a UDP socket on 127.0.0.1) and a vendor end
 * (127.0.0.3). Each end sends a 172-byte RTP packet every 20 ms (50 packets
 * a second each way, as a real call) to where the relay told it, and reads
 * what the relay forwards. The payload carries a magic word, the stream id,
 * a sequence number, a "measured" flag and the send time (CLOCK_MONOTONIC,
 * ns), so the receiver checks that each packet reached the other end of its
 * own call (not another call's, nor its own), counts loss and duplicates per
 * stream, and measures the one-way latency through the relay.
 *
 * The 2N streams are spread evenly over each 20 ms period, as independent
 * calls would be. One thread: ppoll on an epoll descriptor with a
 * nanosecond timeout until the next send, then every readable socket drained.
 *
 * Protocol on stdin/stdout (one line each, for the harness):
 *   out: PORTS <lv0> <vd0> <lv1> <vd1> ...          the ends' local ports
 *   in:  TARGETS <h> <p> <h> <p> ...                 per call: where the LiveVox
 *                                                    end sends, where the vendor end sends
 *   out: MEASURE_START                               after the warm-up
 *   out: MEASURE_END                                 after the measured window
 *   out: RESULT {json}                               after the drain
 *
 * Usage: rtp_load <calls> <warmup_s> <measure_s> <drain_ms>
 * Build: gcc -O2 -Wall -o rtp_load rtp_load.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 20000000LL
#define PACKET 172
#define MAGIC 0x4c564742u /* "LVGB" */
#define HIST_US 200000    /* latency histogram: 1 us buckets up to 200 ms */

struct stream {
    int fd;                  /* the socket it is sent from */
    struct sockaddr_in to;   /* where it is sent */
    uint32_t next_seq;       /* next sequence number to send */
    uint32_t measured_first; /* first sequence number sent in the window */
    uint32_t measured_sent;  /* how many were sent in the window */
    uint8_t *seen;           /* per sequence number: received already */
    uint64_t received_measured;
    uint64_t dups;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int bind_udp(const char *host)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { perror("socket"); exit(2); }
    int size = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) { perror("bind"); exit(2); }
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }
static void put32(uint8_t *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s calls warmup_s measure_s drain_ms\n", argv[0]);
        return 2;
    }
    int calls = atoi(argv[1]);
    double warmup = atof(argv[2]), measure = atof(argv[3]);
    int drain_ms = atoi(argv[4]);
    int nstreams = 2 * calls;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);

    int *fds = calloc(nstreams, sizeof(int));            /* socket of end e: 2i LiveVox, 2i+1 vendor */
    struct stream *st = calloc(nstreams, sizeof(*st)); /* stream 2i: LiveVox->vendor, 2i+1: back */
    int ep = epoll_create1(0);
    printf("PORTS");
    for (int e = 0; e < nstreams; e++) {
        fds[e] = bind_udp(e % 2 ? "127.0.0.3" : "127.0.0.1");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)e};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[e], &ev);
        printf(" %d", port_of(fds[e]));
    }
    printf("\n");
    fflush(stdout);

    char *line = NULL;
    size_t cap = 0;
    if (getline(&line, &cap, stdin) <= 0 || strncmp(line, "TARGETS", 7) != 0) {
        fprintf(stderr, "rtp_load: expected a TARGETS line\n");
        return 2;
    }
    char *tok = strtok(line + 7, " \n");
    uint32_t max_packets = (uint32_t)((warmup + measure) * 50) + 100;
    for (int s = 0; s < nstreams; s++) {
        if (tok == NULL) { fprintf(stderr, "rtp_load: short TARGETS line\n"); return 2; }
        st[s].to.sin_family = AF_INET;
        inet_pton(AF_INET, tok, &st[s].to.sin_addr);
        tok = strtok(NULL, " \n");
        if (tok == NULL) { fprintf(stderr, "rtp_load: short TARGETS line\n"); return 2; }
        st[s].to.sin_port = htons((uint16_t)atoi(tok));
        tok = strtok(NULL, " \n");
        st[s].fd = fds[s]; /* stream 2i leaves from the LiveVox end, 2i+1 from the vendor end */
        st[s].seen = calloc(max_packets, 1);
    }

    uint64_t *hist = calloc(HIST_US + 1, sizeof(uint64_t));
    uint64_t crossed = 0, foreign = 0, received_in_window = 0, send_errors = 0, latency_count = 0;
    int64_t max_lag = 0;
    uint8_t pkt[PACKET], buf[2048];
    memset(pkt, 0xd5, sizeof(pkt)); /* u-law silence-ish filler */

    int64_t start = now_ns() + 50000000LL;
    int64_t measure_start = start + (int64_t)(warmup * 1e9);
    int64_t measure_end = measure_start + (int64_t)(measure * 1e9);
    int64_t drain_end = measure_end + (int64_t)drain_ms * 1000000LL;
    int64_t step = PERIOD_NS / nstreams;
    uint64_t sent_total = 0; /* index into the global send schedule */
    int phase = 0;           /* 0 warm-up, 1 measuring, 2 draining */

    for (;;) {
        int64_t now = now_ns();
        if (phase == 0 && now >= measure_start) {
            phase = 1;
            printf("MEASURE_START\n");
            fflush(stdout);
        }
        if (phase == 1 && now >= measure_end) {
            phase = 2;
            printf("MEASURE_END\n");
            fflush(stdout);
        }
        if (now >= drain_end)
            break;
        /* send every packet now due */
        while (phase < 2) {
            int64_t due = start + (int64_t)sent_total * step;
            if (due > now)
                break;
            if (now - due > max_lag)
                max_lag = now - due;
            int s = (int)(sent_total % nstreams);
            struct stream *x = &st[s];
            uint32_t seq = x->next_seq++;
            int measured = due >= measure_start && due < measure_end;
            if (measured) {
                if (x->measured_sent == 0)
                    x->measured_first = seq;
                x->measured_sent++;
            }
            pkt[0] = 0x80;
            pkt[1] = 0;
            pkt[2] = (seq >> 8) & 0xff;
            pkt[3] = seq & 0xff;
            put32(pkt + 4, seq * 160);
            put32(pkt + 8, 0x10000u + (uint32_t)s);
            put32(pkt + 12, MAGIC);
            put32(pkt + 16, (uint32_t)s);
            put32(pkt + 20, seq);
            put32(pkt + 24, (uint32_t)measured);
            int64_t t = now_ns();
            memcpy(pkt + 28, &t, 8);
            if (sendto(x->fd, pkt, PACKET, 0, (struct sockaddr *)&x->to, sizeof(x->to)) != PACKET)
                send_errors++;
            sent_total++;
        }
        /* wait for datagrams until the next send is due (or the drain ends) */
        int64_t wake = phase < 2 ? start + (int64_t)sent_total * step : drain_end;
        int64_t wait = wake - now_ns();
        if (wait < 0)
            wait = 0;
        struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
        struct pollfd pfd = {.fd = ep, .events = POLLIN};
        if (ppoll(&pfd, 1, &ts, NULL) <= 0)
            continue;
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 0);
        for (int k = 0; k < n; k++) {
            int e = (int)evs[k].data.u32;
            for (;;) {
                ssize_t got = recv(fds[e], buf, sizeof(buf), 0);
                if (got < 0)
                    break;
                int64_t at = now_ns();
                if (got != PACKET || get32(buf + 12) != MAGIC) {
                    foreign++;
                    continue;
                }
                uint32_t s = get32(buf + 16), seq = get32(buf + 20);
                /* end 2i (LiveVox) must get stream 2i+1, end 2i+1 (vendor) stream 2i */
                if (s >= (uint32_t)nstreams || s != (uint32_t)(e ^ 1)) {
                    crossed++;
                    continue;
                }
                if (at >= measure_start && at < measure_end)
                    received_in_window++;
                struct stream *x = &st[s];
                if (seq >= max_packets)
                    continue;
                if (x->seen[seq]) {
                    x->dups++;
                    continue;
                }
                x->seen[seq] = 1;
                if (get32(buf + 24)) {
                    int64_t sent_at;
                    memcpy(&sent_at, buf + 28, 8);
                    int64_t us = (at - sent_at) / 1000;
                    if (us < 0)
                        us = 0;
                    hist[us > HIST_US ? HIST_US : us]++;
                    latency_count++;
                    x->received_measured++;
                }
            }
        }
    }

    uint64_t sent_measured = 0, received_measured = 0, dups = 0;
    for (int s = 0; s < nstreams; s++) {
        sent_measured += st[s].measured_sent;
        received_measured += st[s].received_measured;
        dups += st[s].dups;
    }
    double pct[4] = {0.5, 0.99, 0.999, 1.0};
    long long at_pct[4] = {0, 0, 0, 0};
    for (int q = 0; q < 4; q++) {
        uint64_t want = (uint64_t)(pct[q] * (double)latency_count);
        if (want == 0)
            want = 1;
        uint64_t acc = 0;
        for (int us = 0; us <= HIST_US; us++) {
            acc += hist[us];
            if (acc >= want) {
                at_pct[q] = us;
                break;
            }
        }
    }
    printf("RESULT {\"calls\": %d, \"sent_measured\": %llu, \"received_measured\": %llu,"
           " \"lost\": %llu, \"dups\": %llu, \"crossed\": %llu, \"foreign\": %llu,"
           " \"received_in_window\": %llu, \"send_errors\": %llu, \"max_send_lag_us\": %lld,"
           " \"p50_us\": %lld, \"p99_us\": %lld, \"p999_us\": %lld, \"max_us\": %lld}\n",
           calls, (unsigned long long)sent_measured, (unsigned long long)received_measured,
           (unsigned long long)(sent_measured - received_measured), (unsigned long long)dups,
           (unsigned long long)crossed, (unsigned long long)foreign,
           (unsigned long long)received_in_window, (unsigned long long)send_errors,
           (long long)(max_lag / 1000), at_pct[0], at_pct[1], at_pct[2], at_pct[3]);
    fflush(stdout);
    return 0;
}
