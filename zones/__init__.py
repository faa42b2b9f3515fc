"""Zone kinds (netns, process, container), how their namespaces are held, and how the broker's
socket is attached inside a zone's root."""
