// Only in the prebuilt binaries (-DSIMD_ADAMW_PREBUILD=ON on Linux): keeps their glibc floor at the
// architecture's oldest symbol versions (GLIBC_2.2.5 on x86-64, GLIBC_2.17 on AArch64) instead of
// the glibc 2.36 of the machine that builds them.
//
// The prebuilds link libstdc++ statically, so its objects' references to glibc are bound when the
// addon is linked, to the newest version the build machine's glibc has: glibc 2.34 moved the
// pthread functions into libc under a new version (GLIBC_2.34), and GCC 12's libstdc++ also uses
// __libc_single_threaded (2.32), getentropy (2.25) and arc4random (2.36). A definition in the
// addon itself wins over the shared library's, so each is defined here with hidden visibility (the
// addon exports none of them; the preset hides every symbol) and either calls glibc's old version
// of the same function, which every glibc since still exports, or does without:
//   - pthread_*: the same functions under their original versions, through .symver;
//   - __libc_single_threaded: 0, "maybe several threads", so libstdc++ always uses atomic
//     reference counts (what it does on glibc before 2.32);
//   - getentropy, arc4random: std::random_device's sources (nothing here uses it), written over
//     the getrandom system call.
// The unwinder stays in the shared libgcc_s.so.1 (CMakeLists.txt): a static libgcc would need
// glibc 2.35's _dl_find_object, and libgcc_s is on every glibc system (glibc itself loads it).
//
// Declared here without the system headers: their declarations carry default visibility and the
// new symbol versions, which are what this file replaces.
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#if defined(__x86_64__)
#define SIMD_ADAMW_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define SIMD_ADAMW_GLIBC_BASE "GLIBC_2.17"
#else
#error "glibc-compat.cc: no base glibc version known for this architecture"
#endif

#define SIMD_ADAMW_HIDDEN __attribute__((visibility("hidden")))

// The old version of `name`, reached as old_<name>, and a hidden `name` that forwards to it.
#define SIMD_ADAMW_OLD_VERSION(name, result, parameters, arguments)  \
  result old_##name parameters;                                      \
  __asm__(".symver old_" #name "," #name "@" SIMD_ADAMW_GLIBC_BASE); \
  SIMD_ADAMW_HIDDEN result name parameters { return old_##name arguments; }

extern "C" {

// Opaque stand-ins for the pthread types: only pointers to them cross these functions.
struct simd_adamw_pthread_object;
using ObjectPtr = simd_adamw_pthread_object*;
using Key = unsigned int;
using Thread = unsigned long;

SIMD_ADAMW_OLD_VERSION(pthread_create, int,
                       (Thread * thread, const void* attr, void* (*start)(void*), void* arg),
                       (thread, attr, start, arg))
SIMD_ADAMW_OLD_VERSION(pthread_join, int, (Thread thread, void** result), (thread, result))
SIMD_ADAMW_OLD_VERSION(pthread_detach, int, (Thread thread), (thread))
SIMD_ADAMW_OLD_VERSION(pthread_once, int, (int* control, void (*init)()), (control, init))
SIMD_ADAMW_OLD_VERSION(pthread_mutex_trylock, int, (ObjectPtr mutex), (mutex))
SIMD_ADAMW_OLD_VERSION(pthread_key_create, int, (Key * key, void (*destructor)(void*)),
                       (key, destructor))
SIMD_ADAMW_OLD_VERSION(__pthread_key_create, int, (Key * key, void (*destructor)(void*)),
                       (key, destructor))
SIMD_ADAMW_OLD_VERSION(pthread_key_delete, int, (Key key), (key))
SIMD_ADAMW_OLD_VERSION(pthread_getspecific, void*, (Key key), (key))
SIMD_ADAMW_OLD_VERSION(pthread_setspecific, int, (Key key, const void* value), (key, value))

SIMD_ADAMW_HIDDEN char __libc_single_threaded = 0;

// getrandom(2), as glibc's own getentropy: at most 256 bytes, all of them or an error.
SIMD_ADAMW_HIDDEN int getentropy(void* buffer, size_t length) {
  if (length > 256) {
    errno = EIO;
    return -1;
  }
  auto* bytes = static_cast<unsigned char*>(buffer);
  while (length > 0) {
    const long got = syscall(SYS_getrandom, bytes, length, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    bytes += got;
    length -= static_cast<size_t>(got);
  }
  return 0;
}

SIMD_ADAMW_HIDDEN uint32_t arc4random() {
  uint32_t value = 0;
  // glibc's arc4random cannot fail; without getrandom (Linux < 3.17) there is no entropy to give.
  if (getentropy(&value, sizeof value) != 0) __builtin_trap();
  return value;
}

}  // extern "C"
