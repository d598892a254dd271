/*
 * main.c - command line, configuration, and the event loop.
 *
 *   warren [--config FILE] [--port N] [--data-dir DIR] [--version] [--help]
 *
 * Flags override the config file. The broker runs until SIGTERM or SIGINT,
 * closes every client with 320 CONNECTION_FORCED, and exits 0.
 */
#include "autoconfig.h"
#include "broker.h"
#include "connection.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *out) {
    fprintf(out, "usage: warren [--config FILE] [--port N] [--data-dir DIR] [--version]\n"
                 "  --config FILE    settings in rabbitmq.conf style (see etc/warren.conf)\n"
                 "  --port N         AMQP port (overrides listeners.tcp.*)\n"
                 "  --data-dir DIR   where durable state lives (overrides data_dir)\n");
}

/* Parse flags into cfg; the config file is loaded first so flags win. */
static int load_settings(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"port", required_argument, NULL, 'p'},
        {"data-dir", required_argument, NULL, 'd'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *port = NULL, *data_dir = NULL;
    char err[512];
    int opt;

    while ((opt = getopt_long(argc, argv, "c:p:d:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'p':
            port = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'V':
            printf("warren %s\n", PACKAGE_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return -1;
    }
    config_init(&broker.cfg);
    if (config_path && config_load(&broker.cfg, config_path, err, sizeof err) < 0) goto bad;
    if (port) {
        config_listener_t l;
        if (config_parse_listener(port, &l) < 0) {
            snprintf(err, sizeof err, "--port: expected a port number, got '%s'", port);
            goto bad;
        }
        for (int i = 0; i < broker.cfg.nlisteners; i++)
            broker.cfg.listeners[i].port = l.port;
    }
    if (data_dir && config_set(&broker.cfg, "data_dir", data_dir, err, sizeof err) < 0) goto bad;
    log_threshold = (log_level_t)broker.cfg.log_level;
    return 0;
bad:
    fprintf(stderr, "warren: %s\n", err);
    return -1;
}

static int ensure_data_dir(const char *dir) {
    if (mkdir(dir, 0750) == 0 || errno == EEXIST) return 0;
    log_error("cannot create data directory %s: %s", dir, strerror(errno));
    return -1;
}

int main(int argc, char **argv) {
    if (load_settings(argc, argv) < 0) return 2;
    log_info("starting Warren %s", PACKAGE_VERSION);
    if (ensure_data_dir(broker.cfg.data_dir) < 0 || broker_init() < 0) {
        log_error("startup failed");
        return 1;
    }
    log_info("data directory: %s", broker.cfg.data_dir);
    ev_run(broker.loop, 0);
    conn_flush_all();
    log_info("stopped");
    broker_free();
    return 0;
}
