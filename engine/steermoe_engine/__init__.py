"""steermoe's tensor engine: a child process of the TypeScript CLI, speaking framed messages."""

PROTOCOL_VERSION = 1
