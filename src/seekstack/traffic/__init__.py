"""Traffic management on the registry of deployments: which endpoint takes a request
(:mod:`.policies`), when an endpoint is out of service (:mod:`.breaker`), how many requests wait
and in what order (:mod:`.queue`), and how a broken stream goes on elsewhere (:mod:`.resume`).
:mod:`.router` puts them together for :class:`~seekstack.gateway.upstream.Upstream`."""
