#ifndef C_MALLOC_TRIM_H
#define C_MALLOC_TRIM_H

/// Returns freed heap memory to the operating system where the C library can (glibc's malloc_trim); a no-op
/// elsewhere. Swift's Glibc module does not import <malloc.h>.
#if defined(__linux__)
#include <features.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
static inline void egress_malloc_trim(void) { (void)malloc_trim(0); }
#else
static inline void egress_malloc_trim(void) {}
#endif

#endif
