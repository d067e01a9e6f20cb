/*
 * What the DPDK headers offer only as macros, exported as plain functions
 * and as enum constants (bindgen cannot evaluate function-like macros such
 * as RTE_BIT64(n), but clang evaluates enum initialisers for it).
 */
#ifndef BRIDGEHEAD_DPDK_SHIM_H
#define BRIDGEHEAD_DPDK_SHIM_H

#include <stdint.h>

#include <rte_ethdev.h>
#include <rte_mempool.h>

/* The calling thread's rte_errno (a per-lcore TLS variable behind a macro). */
int bh_rte_errno(void);

enum {
	BH_RTE_ETH_TX_OFFLOAD_IPV4_CKSUM = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM,
	BH_RTE_ETH_TX_OFFLOAD_UDP_CKSUM = RTE_ETH_TX_OFFLOAD_UDP_CKSUM,
	BH_RTE_ETH_TX_OFFLOAD_TCP_CKSUM = RTE_ETH_TX_OFFLOAD_TCP_CKSUM,
	BH_RTE_MEMPOOL_NAMESIZE = RTE_MEMPOOL_NAMESIZE,
};

#endif
