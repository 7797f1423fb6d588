// Errors, packed token masks and the small concurrency helpers every part of the core shares.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace guided_native {

// For the steps of the trie walks' inner loops: a call per trie node costs as much as the step.
#if defined(__GNUC__) || defined(__clang__)
#define GUIDED_INLINE inline __attribute__((always_inline))
#define GUIDED_NOINLINE __attribute__((noinline))
#else
#define GUIDED_INLINE inline
#define GUIDED_NOINLINE
#endif

// What went wrong, as the Python wrapper's guided.errors classes see it.
enum class ErrorKind { Invalid, Violation, Limit, Mismatch };

struct Error : std::runtime_error {
  ErrorKind kind;
  Error(ErrorKind k, const std::string& message) : std::runtime_error(message), kind(k) {}
};

[[noreturn]] inline void invalid(const std::string& m) { throw Error(ErrorKind::Invalid, m); }
[[noreturn]] inline void violation(const std::string& m) { throw Error(ErrorKind::Violation, m); }
[[noreturn]] inline void limit_exceeded(const std::string& m) { throw Error(ErrorKind::Limit, m); }
[[noreturn]] inline void mismatch(const std::string& m) { throw Error(ErrorKind::Mismatch, m); }

// A packed token mask: bit i of word i / 32 is token i (the layout of every peer's bitmask).
using Words = std::vector<uint32_t>;
using WordsPtr = std::shared_ptr<const Words>;

inline void set_bit(uint32_t* w, int32_t i) { w[i >> 5] |= 1u << (i & 31); }
inline bool test_bit(const uint32_t* w, int32_t i) { return (w[i >> 5] >> (i & 31)) & 1u; }

inline void or_into(Words& dst, const Words& src) {
  for (size_t i = 0; i < dst.size(); ++i) dst[i] |= src[i];
}

// A map guarded by one of `kStripes` mutexes chosen by key hash: concurrent readers and writers of
// different keys rarely meet, and no lock is held while a value is computed (two threads may
// compute the same deterministic value; the first stored wins and both return it).
template <typename K, typename V, typename H = std::hash<K>>
class StripedMap {
 public:
  static constexpr size_t kStripes = 64;

  explicit StripedMap(size_t capacity_per_stripe = 0) : capacity_(capacity_per_stripe) {}

  bool find(const K& key, V& out) const {
    const Stripe& s = stripe(key);
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.map.find(key);
    if (it == s.map.end()) return false;
    out = it->second;
    return true;
  }

  // Store `value` unless the key is present; return what is stored.
  V insert(const K& key, V value) {
    Stripe& s = stripe(key);
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.map.find(key);
    if (it != s.map.end()) return it->second;
    if (capacity_ && s.map.size() >= capacity_) {
      // Evict the oldest insertions (FIFO): bounded memory, cache misses only.
      while (s.map.size() >= capacity_ && !s.order.empty()) {
        s.map.erase(s.order.front());
        s.order.erase(s.order.begin());
      }
    }
    s.map.emplace(key, value);
    if (capacity_) s.order.push_back(key);
    return value;
  }

  // Store `value` under `key`, replacing what was there.
  void replace(const K& key, V value) {
    Stripe& s = stripe(key);
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.map.find(key);
    if (it != s.map.end()) {
      it->second = std::move(value);
      return;
    }
    if (capacity_ && s.map.size() >= capacity_) {
      while (s.map.size() >= capacity_ && !s.order.empty()) {
        s.map.erase(s.order.front());
        s.order.erase(s.order.begin());
      }
    }
    s.map.emplace(key, std::move(value));
    if (capacity_) s.order.push_back(key);
  }

  size_t size() const {
    size_t n = 0;
    for (const Stripe& s : stripes_) {
      std::lock_guard<std::mutex> lock(s.mu);
      n += s.map.size();
    }
    return n;
  }

 private:
  struct Stripe {
    mutable std::mutex mu;
    std::unordered_map<K, V, H> map;
    std::vector<K> order;
  };
  Stripe& stripe(const K& key) { return stripes_[mix(H{}(key)) % kStripes]; }
  const Stripe& stripe(const K& key) const { return stripes_[mix(H{}(key)) % kStripes]; }
  static size_t mix(size_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
  }
  size_t capacity_;
  Stripe stripes_[kStripes];
};

struct PairHash {
  size_t operator()(const std::pair<uint64_t, int32_t>& p) const {
    return std::hash<uint64_t>{}(p.first * 0x9E3779B97F4A7C15ULL ^ static_cast<uint32_t>(p.second));
  }
};

}  // namespace guided_native
