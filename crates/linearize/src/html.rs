//! Writes a history and its verdict as a self-contained HTML page.
