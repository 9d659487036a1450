//! Server-side partition assignors of KIP-848 consumer groups: uniform and range.
