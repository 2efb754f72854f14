"""Where the service may connect to: public addresses, and private ones only when allow-listed.

A webhook URL or an image URL given to a check is chosen by someone outside; without this, it
could make the server call its own admin ports, the cloud metadata service (169.254.169.254) or
the office network. The check runs at connect time on the resolved address, and the connection
goes to that very address, so a name that resolves differently a second later (DNS rebinding)
gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(httpx.TransportError):
    """The destination resolves to an address the policy refuses."""


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[Network, ...] = ()
    """Networks reachable even though they are loopback, private or link-local."""

    @classmethod
    def parse(cls, text: str) -> AddressPolicy:
        networks: list[Network] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"allow-list entry {item!r} is not an address or network") from exc
        return cls(tuple(networks))

    def permits(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    def resolve(self, host: str, port: int) -> list[Address]:
        """The host's addresses, every one of them permitted, or :class:`DestinationRefused`."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpx.ConnectError(f"cannot resolve {host!r}: {exc.strerror}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        refused = [address for address in addresses if not self.permits(address)]
        if refused or not addresses:
            raise DestinationRefused(
                f"{host} resolves to {refused[0] if refused else 'nothing'}, a loopback, private or link-local "
                "address that is not allow-listed"
            )
        return addresses

    def check_host(self, host: str, port: int) -> None:
        self.resolve(host, port)

    def transport(self) -> httpx.HTTPTransport:
        return GuardedTransport(self)


class _GuardedBackend(httpcore.SyncBackend):
    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.policy.resolve(host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport, connecting only where ``policy`` permits; ignores proxy settings."""

    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx offers no hook between name resolution and connect; its connection pool does.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy),
        )
