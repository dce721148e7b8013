/*
 * echo_server.c - a classic Unix datagram echo daemon that knows nothing about the gateway.
 *
 * It binds a SOCK_DGRAM socket to the path given with --socket and answers every datagram with
 * one datagram sent back to the sender's address (recvfrom/sendto): the same bytes with ASCII
 * a-z upper-cased, every other byte unchanged. That is all a backend in the gateway's *raw* mode
 * has to do: the gateway sends the HTTP request body as one datagram and returns the first
 * datagram it gets back as the 200 body.
 *
 *   cc -O2 -Wall -Wextra -o echo_server echo_server.c
 *   ./echo_server --socket /run/gateway/raw-echo.sock [--mode 660]
 *
 * SIGTERM and SIGINT stop it cleanly and remove the socket file.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The gateway never sends a raw datagram larger than this (docs/protocol.md, MaxDatagram). */
#define MAX_DATAGRAM 212960

static volatile sig_atomic_t stopping;

static void on_signal(int signo)
{
    (void)signo;
    stopping = 1;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s --socket PATH [--mode OCTAL]\n", argv0);
    exit(2);
}

/* A socket file left behind by a killed predecessor would make bind() fail. */
static void remove_stale(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    mode_t mode = 0660;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            mode = (mode_t)strtol(argv[++i], NULL, 8);
        else
            usage(argv[0]);
    }
    if (path == NULL)
        usage(argv[0]);

    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "socket path too long: %s\n", path);
        return 2;
    }
    strcpy(addr.sun_path, path);

    /* PID 1 in a container ignores SIGTERM unless the program handles it. No SA_RESTART:
     * the signal interrupts recvfrom() with EINTR and the loop ends. */
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    remove_stale(path);
    /* bind() creates the file with mode 0777 & ~umask: never let it exist with a wider mode. */
    mode_t old_umask = umask(0777 & ~mode);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old_umask);
    if (rc < 0) {
        perror("bind");
        return 1;
    }
    fprintf(stderr, "raw echo listening on %s\n", path);

    static unsigned char buf[MAX_DATAGRAM];
    while (!stopping) {
        struct sockaddr_un peer;
        socklen_t peer_len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("recvfrom");
            break;
        }
        if (peer_len <= sizeof(sa_family_t))
            continue; /* unbound sender: there is no address to reply to */
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] >= 'a' && buf[i] <= 'z')
                buf[i] -= 'a' - 'A';
        if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len) < 0)
            perror("sendto"); /* the sender went away: keep serving the others */
    }

    close(fd);
    unlink(path);
    return 0;
}
