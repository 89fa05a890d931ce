/* hostile-faiss.h: the FAISS factory strings issue #10 reported, each of
 * which crashed dejad (SIGFPE, SIGSEGV, abort) or stalled it (minutes of
 * training, gigabytes of RAM) before factory strings were checked. The
 * index's unit test and the server's integration test both refuse every
 * one; the unit test adds more of the same families. */
#ifndef DEJA_TEST_HOSTILE_FAISS_H
#define DEJA_TEST_HOSTILE_FAISS_H

#define HOSTILE_FAISS_FROM_ISSUE_10                                                      \
    "PQ0", "IVF4,PQ0", "ZnLattice0x0_0", "PQ4x0", "PQ4x64", "OPQ0,Flat", "OPQ4_0,Flat",  \
        "PQ4x99", "PCAR0,Flat", "RQ2x0", "LSQ0x8", "IVF4,RQ0x8", "IVF0,Flat",            \
        "IVF100000000,Flat", "IVF1000000000,Flat"

#endif
