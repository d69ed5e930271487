/*
 * The sandbox process of every pod on the local node (image registry.k8s.io/pause, built by
 * src/kubedruid/devcluster/images.py with `gcc -static`). It holds the pod's namespaces and does nothing else:
 * sleeps in pause(), reaps children re-parented to it, exits 0 on SIGINT/SIGTERM. Same behaviour as
 * Kubernetes' build/pause/linux/pause.c, written anew.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "3.10.2-kubedruid"

static void on_stop(int signo) {
    static const char msg[] = "pause: shutting down\n";
    (void)signo;
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1); /* async-signal-safe, unlike stdio */
    _exit(0);
}

static void on_child(int signo) {
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            printf("pause version %s\n", VERSION);
            return 0;
        }
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: warning: not pid 1, children are not reaped here\n");
    }
    struct sigaction stop = {.sa_handler = on_stop};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
        sigaction(SIGCHLD, &child, NULL) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
