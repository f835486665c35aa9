//! jwtproxy drop-in (filled in below).
