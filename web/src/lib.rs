//! The deploy site (issue 5). Work in progress.
