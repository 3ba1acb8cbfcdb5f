//! One configuration file for every stack (feature `config`).
