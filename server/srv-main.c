/* srv-main.c: dejad's entry point -- parse flags, run the server. */
#include "srv.h"

int main(int argc, char **argv) {
    srv_config cfg;
    int rc = srv_config_parse(&cfg, argc, argv);
    if (rc > 0) return 0;
    if (rc < 0) return 2;
    if (srv_log_open(&cfg) != 0) {
        srv_config_free(&cfg);
        return 1;
    }
    rc = srv_run(&cfg, argc, argv);
    srv_log_close();
    srv_config_free(&cfg);
    return rc;
}
