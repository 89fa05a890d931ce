/* srv-main.c: dejad's entry point -- parse flags, run the server. */
#include "srv.h"

int main(int argc, char **argv) {
    srv_config cfg;
    int rc = srv_config_parse(&cfg, argc, argv);
    if (rc > 0) return 0;
    if (rc < 0) return 2;
    srv_log_init(cfg.log_level);
    return srv_run(&cfg);
}
