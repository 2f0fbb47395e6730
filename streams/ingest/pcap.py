"""DNS messages out of a pcap: UDP datagrams and length-prefixed TCP streams.

Used by ``dnsguard replay`` (pcap input) and the capture tests. Handles
Ethernet (with VLAN tags), Linux cooked capture, raw IP and BSD loopback link
types; TCP payloads are reassembled per direction in sequence order and cut
into messages by the 2-byte length prefix.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt

DNS_PORTS = frozenset({53, 5353, 5355, 1053})


@dataclass(frozen=True, slots=True)
class DnsPacket:
    ts: float
    transport: str  # "udp" or "tcp"
    src: tuple[str, int]
    dst: tuple[str, int]
    wire: bytes


class UnsupportedCapture(ValueError):
    """The capture's link type is not one this reader decodes."""


def _ip_layer(linktype: int, buf: bytes) -> dpkt.Packet | None:
    if linktype == dpkt.pcap.DLT_EN10MB:
        eth = dpkt.ethernet.Ethernet(buf)
        return eth.data if isinstance(eth.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
    if linktype in (dpkt.pcap.DLT_RAW, 101, 12, 14):
        version = buf[0] >> 4 if buf else 0
        return dpkt.ip.IP(buf) if version == 4 else dpkt.ip6.IP6(buf) if version == 6 else None
    if linktype == 113:  # Linux cooked
        sll = dpkt.sll.SLL(buf)
        return sll.data if isinstance(sll.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
    if linktype == dpkt.pcap.DLT_NULL:
        family = struct.unpack("<I", buf[:4])[0]
        inner = buf[4:]
        return dpkt.ip.IP(inner) if family == 2 else dpkt.ip6.IP6(inner)
    raise UnsupportedCapture(f"link type {linktype} is not supported")


def _addr(ip: dpkt.Packet, src: bool) -> str:
    raw = ip.src if src else ip.dst
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def read_dns(path: Path) -> Iterator[DnsPacket]:
    """Every DNS message in the capture, in capture order (TCP at stream end)."""
    streams: dict[tuple[tuple[str, int], tuple[str, int]], list[tuple[int, float, bytes]]] = {}
    with path.open("rb") as fh:
        try:
            reader = dpkt.pcap.Reader(fh)
        except ValueError:
            fh.seek(0)
            reader = dpkt.pcapng.Reader(fh)
        linktype = reader.datalink()
        for ts, buf in reader:
            try:
                ip = _ip_layer(linktype, buf)
            except (dpkt.UnpackError, IndexError, struct.error):
                continue
            if ip is None:
                continue
            l4 = ip.data
            if isinstance(l4, dpkt.udp.UDP) and (l4.sport in DNS_PORTS or l4.dport in DNS_PORTS):
                payload = bytes(l4.data)
                if payload:
                    yield DnsPacket(
                        ts,
                        "udp",
                        (_addr(ip, True), l4.sport),
                        (_addr(ip, False), l4.dport),
                        payload,
                    )
            elif (
                isinstance(l4, dpkt.tcp.TCP)
                and (l4.sport in DNS_PORTS or l4.dport in DNS_PORTS)
                and l4.data
            ):
                key = ((_addr(ip, True), l4.sport), (_addr(ip, False), l4.dport))
                streams.setdefault(key, []).append((l4.seq, ts, bytes(l4.data)))
    for (src, dst), segments in streams.items():
        segments.sort(key=lambda s: s[0])
        data = b""
        expected = segments[0][0]
        first_ts = segments[0][1]
        for seq, _, payload in segments:
            if seq < expected:  # retransmission / overlap
                payload = payload[expected - seq :]
                seq = expected
            if seq != expected:
                break  # a gap: stop at it
            data += payload
            expected = seq + len(payload)
        pos = 0
        while pos + 2 <= len(data):
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            if pos + 2 + n > len(data):
                break
            yield DnsPacket(first_ts, "tcp", src, dst, data[pos + 2 : pos + 2 + n])
            pos += 2 + n
