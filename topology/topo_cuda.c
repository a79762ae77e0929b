/* topo_cuda.c: the CUDA runtime side of topology/ — how many devices this process sees, a
 * device's PCI bus id, and its local CPUs through hwloc's cudart helper (sysfs local_cpus on
 * Linux). Only this file includes the CUDA headers; without CUDA it reports no device, so the
 * planner places the rank by NUMA node. */
#include "topo.h"

#ifdef COGPU_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <hwloc/cudart.h>

int cg_topo_cuda_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError(); /* no driver or no device: not an error for placement */
    return 0;
  }
  return n;
}

int cg_topo_cuda_pci(int dev, char *buf, size_t len) {
  char raw[64];
  unsigned d, b, s, f;
  if (cudaDeviceGetPCIBusId(raw, (int)sizeof raw, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  /* CUDA prints "0000:3B:00.0" (some versions an 8-digit domain); hwloc wants lower case. */
  if (sscanf(raw, "%x:%x:%x.%x", &d, &b, &s, &f) != 4) return -1;
  snprintf(buf, len, "%04x:%02x:%02x.%x", d, b, s, f);
  return 0;
}

int cg_topo_cuda_cpuset(hwloc_topology_t topo, int dev, hwloc_cpuset_t set) {
  return hwloc_cudart_get_device_cpuset(topo, dev, set);
}

#else

int cg_topo_cuda_count(void) { return 0; }

int cg_topo_cuda_pci(int dev, char *buf, size_t len) {
  (void)dev;
  if (len) buf[0] = '\0';
  return -1;
}

int cg_topo_cuda_cpuset(hwloc_topology_t topo, int dev, hwloc_cpuset_t set) {
  (void)topo;
  (void)dev;
  (void)set;
  return -1;
}

#endif
