/* srv-main.c: dejad's entry point -- parse flags, run the server. */
#include <stdlib.h> /* defines __GLIBC__ on glibc */
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "srv.h"

int main(int argc, char **argv) {
#ifdef __GLIBC__
    /* glibc raises its mmap threshold each time a large block is freed
     * (up to 32 MiB), after which large buffers (graph chunks, a staging
     * index after a burst) come from the heap and stay there once freed:
     * under churn the process grew 22% while its accounting stayed flat
     * (deja-bench churn, 100,000 x 1536). A fixed threshold keeps blocks of
     * 128 KiB and more in their own mappings, returned when freed. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
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
