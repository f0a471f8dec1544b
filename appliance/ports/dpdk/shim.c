/*
 * C shim of the DPDK backend (appliance/ports/dpdk).
 *
 * DPDK's fast-path functions (rte_eth_rx_burst, rte_pktmbuf_alloc, ...) are
 * static inline in its headers, so Rust cannot link to them; this file turns
 * each one the backend uses into a real symbol. It also hides the large,
 * release-specific structs (rte_eth_conf, rte_eth_dev_info, rte_flow items)
 * behind small flat structs that the Rust side mirrors (ffi.rs), and it
 * checks at compile time every layout and constant the Rust side relies on,
 * so a DPDK with a different ABI fails the build instead of corrupting
 * memory.
 *
 * Written against DPDK 22.11 LTS. No state lives here.
 */
#define _GNU_SOURCE /* pthread_{get,set}affinity_np */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_version.h>

/* ---- What mbuf.rs reads directly (its `RteMbuf` mirror) ---------------- */
_Static_assert(sizeof(struct rte_mbuf) == 128, "RteMbuf mirror: size");
_Static_assert(offsetof(struct rte_mbuf, buf_addr) == 0, "RteMbuf mirror: buf_addr");
_Static_assert(offsetof(struct rte_mbuf, data_off) == 16, "RteMbuf mirror: data_off");
_Static_assert(offsetof(struct rte_mbuf, refcnt) == 18, "RteMbuf mirror: refcnt");
_Static_assert(offsetof(struct rte_mbuf, nb_segs) == 20, "RteMbuf mirror: nb_segs");
_Static_assert(offsetof(struct rte_mbuf, port) == 22, "RteMbuf mirror: port");
_Static_assert(offsetof(struct rte_mbuf, ol_flags) == 24, "RteMbuf mirror: ol_flags");
_Static_assert(offsetof(struct rte_mbuf, packet_type) == 32, "RteMbuf mirror: packet_type");
_Static_assert(offsetof(struct rte_mbuf, pkt_len) == 36, "RteMbuf mirror: pkt_len");
_Static_assert(offsetof(struct rte_mbuf, data_len) == 40, "RteMbuf mirror: data_len");
_Static_assert(offsetof(struct rte_mbuf, buf_len) == 54, "RteMbuf mirror: buf_len");
_Static_assert(offsetof(struct rte_mbuf, pool) == 56, "RteMbuf mirror: pool");
_Static_assert(offsetof(struct rte_mbuf, priv_size) == 88, "RteMbuf mirror: priv_size");
/* The private area (our PacketMeta) starts right after the mbuf header. */
_Static_assert(RTE_MBUF_PRIV_ALIGN == 8, "mbuf.rs: META_PRIV_SIZE rounding");
/* pipelines::buf::HEADROOM and DATA_ROOM mirror these. */
_Static_assert(RTE_PKTMBUF_HEADROOM == 128, "pipelines::buf::HEADROOM");
_Static_assert(RTE_MBUF_DEFAULT_BUF_SIZE == 2048 + 128, "pipelines::buf::DATA_ROOM");

/* ---- Constants mirrored in ffi.rs ------------------------------------- */
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_MASK == 0x90, "ffi::RX_IP_CKSUM_MASK");
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_BAD == 0x10, "ffi::RX_IP_CKSUM_BAD");
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_GOOD == 0x80, "ffi::RX_IP_CKSUM_GOOD");
_Static_assert(RTE_MBUF_F_RX_L4_CKSUM_MASK == 0x108, "ffi::RX_L4_CKSUM_MASK");
_Static_assert(RTE_MBUF_F_RX_L4_CKSUM_BAD == 0x8, "ffi::RX_L4_CKSUM_BAD");
_Static_assert(RTE_ETH_RSS_IP == 0xa38cULL, "ffi::RSS_IP");
_Static_assert(RTE_ETH_RSS_TCP == 0x10410ULL, "ffi::RSS_TCP");
_Static_assert(RTE_ETH_RSS_UDP == 0x20820ULL, "ffi::RSS_UDP");
_Static_assert(RTE_ETH_RX_OFFLOAD_IPV4_CKSUM == 0x2, "ffi::RX_OFFLOAD_IPV4_CKSUM");
_Static_assert(RTE_ETH_RX_OFFLOAD_UDP_CKSUM == 0x4, "ffi::RX_OFFLOAD_UDP_CKSUM");
_Static_assert(RTE_ETH_RX_OFFLOAD_TCP_CKSUM == 0x8, "ffi::RX_OFFLOAD_TCP_CKSUM");
_Static_assert(RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE == 0x10000, "ffi::TX_OFFLOAD_MBUF_FAST_FREE");
_Static_assert(RTE_ETH_XSTATS_NAME_SIZE == 64, "ffi::XSTAT_NAME_SIZE");
_Static_assert(sizeof(struct rte_eth_xstat) == 16, "ffi::EthXstat");
_Static_assert(sizeof(struct rte_ether_addr) == 6, "ffi::EtherAddr");
_Static_assert(RTE_MAX_ETHPORTS == 32, "ffi::MAX_ETHPORTS");

/* ---- Errors ----------------------------------------------------------- */

int shim_errno(void) { return rte_errno; }

const char *shim_version(void) { return rte_version(); }

unsigned shim_lcore_id(void) { return rte_lcore_id(); }

/*
 * rte_eal_init pins the calling thread to the main lcore's CPUs, and every
 * thread it creates later inherits that pin. The appliance pins its own
 * lcores, so the caller's affinity is put back once the EAL is up.
 * Returns rte_eal_init's result; *restored is 1 when the affinity was put
 * back.
 */
int shim_eal_init(int argc, char **argv, int *restored)
{
	cpu_set_t saved;
	int have_saved = pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0;
	int ret = rte_eal_init(argc, argv);
	*restored = 0;
	if (have_saved && pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved) == 0)
		*restored = 1;
	return ret;
}

/* ---- Fast path -------------------------------------------------------- */

uint16_t shim_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t shim_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *shim_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

void shim_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

char *shim_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, char *); }

uint16_t shim_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }

uint16_t shim_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }

uint16_t shim_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }

void *shim_mbuf_to_priv(struct rte_mbuf *m) { return rte_mbuf_to_priv(m); }

/*
 * A copy of a single-segment mbuf in a fresh mbuf of the same pool, with the
 * same headroom and frame bytes (rte_pktmbuf_copy would reset the headroom).
 * The private area is the caller's to copy. NULL when the pool is empty or
 * the source is not a single segment.
 */
struct rte_mbuf *shim_pktmbuf_copy_frame(const struct rte_mbuf *m)
{
	struct rte_mbuf *c;
	if (m->nb_segs != 1)
		return NULL;
	c = rte_pktmbuf_alloc(m->pool);
	if (c == NULL)
		return NULL;
	if (c->buf_len < m->data_off + m->data_len) {
		rte_pktmbuf_free(c);
		return NULL;
	}
	c->data_off = m->data_off;
	c->data_len = m->data_len;
	c->pkt_len = m->data_len;
	rte_memcpy(rte_pktmbuf_mtod(c, char *), rte_pktmbuf_mtod(m, const char *), m->data_len);
	return c;
}

/* ---- Ports ------------------------------------------------------------ */

struct shim_dev_info {
	char driver[64];
	uint16_t max_rx_queues;
	uint16_t max_tx_queues;
	uint16_t rx_desc_max;
	uint16_t rx_desc_min;
	uint16_t tx_desc_max;
	uint16_t tx_desc_min;
	uint16_t reta_size;
	uint8_t hash_key_size;
	uint8_t _pad;
	uint64_t rx_offload_capa;
	uint64_t tx_offload_capa;
	uint64_t flow_type_rss_offloads;
	int32_t socket_id;
	uint32_t _pad2;
};
_Static_assert(sizeof(struct shim_dev_info) == 64 + 16 + 24 + 8, "ffi::ShimDevInfo");

int shim_dev_info(uint16_t port, struct shim_dev_info *out)
{
	struct rte_eth_dev_info info;
	int ret = rte_eth_dev_info_get(port, &info);
	memset(out, 0, sizeof(*out));
	if (ret != 0)
		return ret;
	snprintf(out->driver, sizeof(out->driver), "%s",
		 info.driver_name != NULL ? info.driver_name : "?");
	out->max_rx_queues = info.max_rx_queues;
	out->max_tx_queues = info.max_tx_queues;
	out->rx_desc_max = info.rx_desc_lim.nb_max;
	out->rx_desc_min = info.rx_desc_lim.nb_min;
	out->tx_desc_max = info.tx_desc_lim.nb_max;
	out->tx_desc_min = info.tx_desc_lim.nb_min;
	out->reta_size = info.reta_size;
	out->hash_key_size = info.hash_key_size;
	out->rx_offload_capa = info.rx_offload_capa;
	out->tx_offload_capa = info.tx_offload_capa;
	out->flow_type_rss_offloads = info.flow_type_rss_offloads;
	out->socket_id = rte_eth_dev_socket_id(port);
	return 0;
}

struct shim_port_conf {
	uint16_t rx_queues;
	uint16_t tx_queues;
	uint16_t rx_desc;
	uint16_t tx_desc;
	int32_t socket_id;
	uint32_t _pad;
	uint64_t rss_hf;       /* 0: no RSS */
	uint64_t rx_offloads;
	uint64_t tx_offloads;
};
_Static_assert(sizeof(struct shim_port_conf) == 40, "ffi::ShimPortConf");

/* Steps of shim_port_setup, reported in *failed_step on error. */
enum { STEP_CONFIGURE = 1, STEP_DESC = 2, STEP_RXQ = 3, STEP_TXQ = 4 };

/*
 * rte_eth_dev_configure + descriptor adjustment + every RX and TX queue.
 * Returns 0, or a negative errno with *failed_step and *failed_queue set.
 */
int shim_port_setup(uint16_t port, const struct shim_port_conf *c, struct rte_mempool *mp,
		    int *failed_step, int *failed_queue)
{
	struct rte_eth_conf conf;
	uint16_t rxd = c->rx_desc, txd = c->tx_desc, q;
	int ret;

	memset(&conf, 0, sizeof(conf));
	if (c->rss_hf != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_key = NULL; /* the PMD's default key */
		conf.rx_adv_conf.rss_conf.rss_hf = c->rss_hf;
	}
	conf.rxmode.offloads = c->rx_offloads;
	conf.txmode.offloads = c->tx_offloads;
	*failed_queue = -1;

	ret = rte_eth_dev_configure(port, c->rx_queues, c->tx_queues, &conf);
	if (ret < 0) {
		*failed_step = STEP_CONFIGURE;
		return ret;
	}
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
	if (ret < 0) {
		*failed_step = STEP_DESC;
		return ret;
	}
	for (q = 0; q < c->rx_queues; q++) {
		ret = rte_eth_rx_queue_setup(port, q, rxd, (unsigned)c->socket_id, NULL, mp);
		if (ret < 0) {
			*failed_step = STEP_RXQ;
			*failed_queue = q;
			return ret;
		}
	}
	for (q = 0; q < c->tx_queues; q++) {
		ret = rte_eth_tx_queue_setup(port, q, txd, (unsigned)c->socket_id, NULL);
		if (ret < 0) {
			*failed_step = STEP_TXQ;
			*failed_queue = q;
			return ret;
		}
	}
	return 0;
}

struct shim_link {
	uint32_t speed_mbps;
	uint8_t up;
	uint8_t full_duplex;
	uint8_t autoneg;
	uint8_t _pad;
};

int shim_link_get_nowait(uint16_t port, struct shim_link *out)
{
	struct rte_eth_link link;
	int ret;
	memset(&link, 0, sizeof(link));
	memset(out, 0, sizeof(*out));
	ret = rte_eth_link_get_nowait(port, &link);
	if (ret != 0)
		return ret;
	out->speed_mbps = link.link_speed;
	out->up = link.link_status == RTE_ETH_LINK_UP;
	out->full_duplex = link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
	out->autoneg = link.link_autoneg == RTE_ETH_LINK_AUTONEG;
	return 0;
}

struct shim_port_stats {
	uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
};

int shim_stats_get(uint16_t port, struct shim_port_stats *out)
{
	struct rte_eth_stats s;
	int ret = rte_eth_stats_get(port, &s);
	memset(out, 0, sizeof(*out));
	if (ret != 0)
		return ret;
	out->ipackets = s.ipackets;
	out->opackets = s.opackets;
	out->ibytes = s.ibytes;
	out->obytes = s.obytes;
	out->imissed = s.imissed;
	out->ierrors = s.ierrors;
	out->oerrors = s.oerrors;
	out->rx_nombuf = s.rx_nombuf;
	return 0;
}

/* ---- rte_flow: NAT return-traffic steering ----------------------------- */

struct shim_flow_rule {
	uint8_t ipv6;         /* 0: addr[0..4] is an IPv4 address */
	uint8_t proto;        /* IPPROTO_TCP or IPPROTO_UDP */
	uint16_t dst_port;    /* host order */
	uint16_t dst_port_mask;
	uint16_t queue;
	uint8_t addr[16];     /* network order */
};
_Static_assert(sizeof(struct shim_flow_rule) == 24, "ffi::ShimFlowRule");

/*
 * Builds "ingress, eth / ipv4|ipv6 dst is ADDR / tcp|udp dst PORT with MASK
 * -> queue Q" and validates it (create == 0) or creates it (create == 1).
 * On failure, writes the PMD's explanation into msg.
 */
static int flow_rule(uint16_t port, const struct shim_flow_rule *r, int create,
		     struct rte_flow **made, char *msg, size_t msg_len)
{
	struct rte_flow_attr attr;
	struct rte_flow_item pattern[4];
	struct rte_flow_action actions[2];
	struct rte_flow_action_queue queue;
	struct rte_flow_item_ipv4 ip4, ip4_mask;
	struct rte_flow_item_ipv6 ip6, ip6_mask;
	struct rte_flow_item_tcp tcp, tcp_mask;
	struct rte_flow_item_udp udp, udp_mask;
	struct rte_flow_error err;
	int ret;

	memset(&attr, 0, sizeof(attr));
	memset(pattern, 0, sizeof(pattern));
	memset(actions, 0, sizeof(actions));
	memset(&queue, 0, sizeof(queue));
	memset(&ip4, 0, sizeof(ip4));
	memset(&ip4_mask, 0, sizeof(ip4_mask));
	memset(&ip6, 0, sizeof(ip6));
	memset(&ip6_mask, 0, sizeof(ip6_mask));
	memset(&tcp, 0, sizeof(tcp));
	memset(&tcp_mask, 0, sizeof(tcp_mask));
	memset(&udp, 0, sizeof(udp));
	memset(&udp_mask, 0, sizeof(udp_mask));
	memset(&err, 0, sizeof(err));
	if (msg_len > 0)
		msg[0] = '\0';

	attr.ingress = 1;
	pattern[0].type = RTE_FLOW_ITEM_TYPE_ETH;
	if (r->ipv6) {
		memcpy(ip6.hdr.dst_addr, r->addr, 16);
		memset(ip6_mask.hdr.dst_addr, 0xff, 16);
		pattern[1].type = RTE_FLOW_ITEM_TYPE_IPV6;
		pattern[1].spec = &ip6;
		pattern[1].mask = &ip6_mask;
	} else {
		memcpy(&ip4.hdr.dst_addr, r->addr, 4);
		ip4_mask.hdr.dst_addr = UINT32_MAX;
		pattern[1].type = RTE_FLOW_ITEM_TYPE_IPV4;
		pattern[1].spec = &ip4;
		pattern[1].mask = &ip4_mask;
	}
	if (r->proto == IPPROTO_TCP) {
		tcp.hdr.dst_port = rte_cpu_to_be_16(r->dst_port);
		tcp_mask.hdr.dst_port = rte_cpu_to_be_16(r->dst_port_mask);
		pattern[2].type = RTE_FLOW_ITEM_TYPE_TCP;
		pattern[2].spec = &tcp;
		pattern[2].mask = &tcp_mask;
	} else if (r->proto == IPPROTO_UDP) {
		udp.hdr.dst_port = rte_cpu_to_be_16(r->dst_port);
		udp_mask.hdr.dst_port = rte_cpu_to_be_16(r->dst_port_mask);
		pattern[2].type = RTE_FLOW_ITEM_TYPE_UDP;
		pattern[2].spec = &udp;
		pattern[2].mask = &udp_mask;
	} else {
		snprintf(msg, msg_len, "protocol %u is not TCP or UDP", r->proto);
		return -EINVAL;
	}
	pattern[3].type = RTE_FLOW_ITEM_TYPE_END;
	queue.index = r->queue;
	actions[0].type = RTE_FLOW_ACTION_TYPE_QUEUE;
	actions[0].conf = &queue;
	actions[1].type = RTE_FLOW_ACTION_TYPE_END;

	if (create) {
		*made = rte_flow_create(port, &attr, pattern, actions, &err);
		if (*made != NULL)
			return 0;
		ret = rte_errno != 0 ? -rte_errno : -EIO;
	} else {
		ret = rte_flow_validate(port, &attr, pattern, actions, &err);
		if (ret == 0)
			return 0;
	}
	snprintf(msg, msg_len, "%s (rte_flow error type %d)",
		 err.message != NULL ? err.message : strerror(ret < 0 ? -ret : ret), (int)err.type);
	return ret < 0 ? ret : -ret;
}

int shim_flow_validate(uint16_t port, const struct shim_flow_rule *r, char *msg, size_t msg_len)
{
	return flow_rule(port, r, 0, NULL, msg, msg_len);
}

int shim_flow_create(uint16_t port, const struct shim_flow_rule *r, char *msg, size_t msg_len)
{
	struct rte_flow *made = NULL;
	return flow_rule(port, r, 1, &made, msg, msg_len);
}

int shim_flow_flush(uint16_t port)
{
	struct rte_flow_error err;
	memset(&err, 0, sizeof(err));
	return rte_flow_flush(port, &err);
}

/* ---- Mempools --------------------------------------------------------- */

const char *shim_mempool_name(const struct rte_mempool *mp) { return mp->name; }
