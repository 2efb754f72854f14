"""Outbound address policy: where the product may connect when a feed, a seller or a member names a URL.

Feed URLs come from marketplaces and their image URLs from sellers, so a fetch could be aimed at
the machine itself, the office network or a cloud metadata service. Every outbound connection
goes through :class:`NetPolicy`: the host is resolved once, every address it resolves to is
classified, and a connection is made only to an address that was checked (never resolving the
name a second time, which is what DNS rebinding exploits). Loopback, private, link-local,
multicast, unspecified and reserved addresses are refused, IPv4-mapped and other IPv6 forms that
embed an IPv4 address are judged by that address, and only the networks in the setting
``allowed_private_networks`` are let through.

The check sits in the connection layer of httpx (a network backend under the connection pool),
so it holds for every request of a client made by :meth:`NetPolicy.client` or carried by
:meth:`NetPolicy.transport`, redirects included: each new connection is checked, and TLS still
verifies and sends the host name (SNI), not the address.

Small API::

    policy = NetPolicy.from_cidrs(["10.1.0.0/16"])   # or NetPolicy.from_settings(settings)
    classify("169.254.169.254")                     # -> "link-local"
    policy.check_url("https://hooks.example.com/x")  # raises AddressRefusedError
    with policy.client(timeout=5) as client: ...     # an httpx.Client that connects only where allowed
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from counterscan.errors import UserError
from counterscan.ingest.urls import check_host, parse_url

if TYPE_CHECKING:
    from counterscan.config import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

SETTING_HINT = "allow it with the setting allowed_private_networks (env COUNTERSCAN_ALLOWED_PRIVATE_NETWORKS)"


class AddressRefusedError(UserError):
    """An outbound connection to an address the policy refuses; the message names host, address and why."""


# IANA special-purpose registries, most specific first. Written out rather than taken from
# ipaddress's is_private/is_global, whose answers changed between Python patch releases.
_V4_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/32", "unspecified"),
    ("0.0.0.0/8", "reserved"),  # "this network"
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "private"),  # carrier-grade NAT, shared address space
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # cloud metadata services live here
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255, broadcast
)
_V6_RANGES: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),  # protocol assignments, Teredo
    ("2001:db8::/32", "reserved"),
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # site-local, deprecated
    ("ff00::/8", "multicast"),
)
_V4 = tuple((ipaddress.IPv4Network(cidr), why) for cidr, why in _V4_RANGES)
_V6 = tuple((ipaddress.IPv6Network(cidr), why) for cidr, why in _V6_RANGES)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_address(address: str | Address) -> Address:
    if not isinstance(address, str):
        return address
    text = address.strip().strip("[]").split("%", 1)[0]  # brackets of a URL host, an IPv6 zone id
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise UserError(f"{address!r} is not an IP address") from None


def effective(address: str | Address) -> Address:
    """The address a packet really goes to: the IPv4 one inside IPv4-mapped, NAT64 and 6to4 forms."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return parsed.ipv4_mapped
        if parsed in _NAT64:
            return ipaddress.IPv4Address(int(parsed) & 0xFFFFFFFF)
        if parsed.sixtofour is not None:
            return parsed.sixtofour
    return parsed


def classify(address: str | Address) -> str | None:
    """Why ``address`` is not a public internet address ("loopback", "private", "link-local",
    "multicast", "unspecified", "reserved"), or None when it is one."""
    target = effective(address)
    if isinstance(target, ipaddress.IPv4Address):
        return next((why for network, why in _V4 if target in network), None)
    found = next((why for network, why in _V6 if target in network), None)
    if found is None and target not in _GLOBAL_UNICAST:
        return "reserved"
    return found


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IP literals resolve to themselves)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for cidr in cidrs:
        text = cidr.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise UserError(
                f"allowed_private_networks: {text!r} is not a network (write CIDR, e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


@dataclass(frozen=True)
class NetPolicy:
    """Which addresses outbound requests may reach. The default refuses every non-public address."""

    allowed: tuple[Network, ...] = ()
    resolver: Resolver = field(default=system_resolve, compare=False, repr=False)

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str], *, resolver: Resolver = system_resolve) -> NetPolicy:
        return cls(allowed=parse_networks(cidrs), resolver=resolver)

    @classmethod
    def from_settings(cls, settings: Settings) -> NetPolicy:
        return cls.from_cidrs(settings.allowed_private_networks)

    def refusal(self, address: str | Address) -> str | None:
        """Why the policy refuses ``address`` (the kind of address), or None when it may be reached."""
        parsed = parse_address(address)
        why = classify(parsed)
        if why is None:
            return None
        target = effective(parsed)
        if any(target.version == net.version and target in net for net in self.allowed):
            return None
        if any(parsed.version == net.version and parsed in net for net in self.allowed):
            return None
        return why

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``, all checked; refuses the host when any of its
        addresses is refused (a name that also points inside is not trusted for the rest). A host
        that is not a well-formed address or name is refused (MalformedURLError) before any lookup."""
        name = host.strip("[]")
        try:
            addresses = [parse_address(name).compressed]
        except UserError:
            name = check_host(name)
            try:
                addresses = list(self.resolver(name, port))
            except (OSError, UnicodeError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {name!r} ({exc})") from None
        if not addresses:
            raise httpcore.ConnectError(f"{name!r} resolves to no address")
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                shown = name if name == address else f"{name} ({address})"
                raise AddressRefusedError(f"{shown} is a {why} address: refused ({SETTING_HINT})")
        return addresses

    def check_url(self, url: str) -> None:
        """Refuse a malformed URL (MalformedURLError, before any lookup) or one whose host the policy
        refuses (resolves now: use it to validate a URL when it is registered; fetches are checked
        again when they connect)."""
        parsed = parse_url(url)
        try:
            self.resolve(parsed.host, parsed.port)
        except httpcore.ConnectError as exc:
            raise AddressRefusedError(str(exc)) from None

    def transport(self, **kwargs: Any) -> httpx.HTTPTransport:
        """An httpx transport whose every connection is checked and pinned (``HTTPTransport`` arguments)."""
        return _PinnedTransport(self, **kwargs)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` over :meth:`transport`; proxies from the environment are ignored (a proxy
        would resolve and connect for us, out of the policy's reach)."""
        transport_args = {key: kwargs.pop(key) for key in ("verify", "limits", "http2") if key in kwargs}
        return httpx.Client(transport=self.transport(**transport_args), trust_env=False, **kwargs)


class _PinnedBackend(httpcore.NetworkBackend):
    """Resolves and checks once per connection, then connects to the checked address itself."""

    def __init__(self, policy: NetPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self._policy.resolve(host, port):
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise AddressRefusedError("connections over unix sockets are refused")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _PinnedTransport(httpx.HTTPTransport):
    def __init__(
        self,
        policy: NetPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        http2: bool = False,
    ) -> None:
        chosen = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        ssl_context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        # The pool httpx's own __init__ would build (not called: it would load the CA bundle a second
        # time), with our backend underneath: httpx has no public knob for the network backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=chosen.max_connections,
            max_keepalive_connections=chosen.max_keepalive_connections,
            keepalive_expiry=chosen.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=_PinnedBackend(policy),
        )
