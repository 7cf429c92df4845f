"""The web console at ``/console``, in Chinese and English: pages rendered on the server from
the same services and permissions as the API, a small script for the API calls and the
playground's streaming, charts drawn as SVG. Nothing to install or build."""
