//! The node agent and its container runtimes (filled by the node agent issue).
