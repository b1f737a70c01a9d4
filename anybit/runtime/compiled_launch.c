/* anybit's compiled launch backend: cuLaunchKernel and cuLaunchKernelEx called from C.
 *
 * Through cuda.bindings a bare cuLaunchKernel costs ~5.5 us of host time on the H200's hosts (the bindings
 * convert eleven Python arguments into driver types every call); the driver itself takes a fraction of it.
 * This module takes plain ints (the function handle, grid, block, shared bytes, stream, the address of the
 * parameter array anybit's launcher fills) with METH_FASTCALL and calls the driver directly. A bound launch
 * (launch_frame) takes the parameter bytes fixed when it was bound and this call's pointers instead, and
 * packs them on its own stack.
 *
 * No CUDA header is needed: libcuda.so.1 is opened at the first launch and the two entry points and the
 * launch-config structs are declared here as the driver ABI defines them (checked against cuda.h by
 * tests/runtime/test_compiled_launch.py where a toolkit is installed). Built on first use by
 * anybit/runtime/compiled_launch.py with the system C compiler, as Triton builds its launchers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef int CUresult;
typedef void *CUfunction;
typedef void *CUstream;

/* CUlaunchAttribute: an enum id padded to 8 bytes, then a 64-byte value union. */
typedef struct {
    int id;
    char pad[4];
    union {
        char bytes[64];
        int programmaticStreamSerializationAllowed;
    } value;
} anybit_launch_attribute;

typedef struct {
    unsigned int gridDimX, gridDimY, gridDimZ;
    unsigned int blockDimX, blockDimY, blockDimZ;
    unsigned int sharedMemBytes;
    CUstream hStream;
    anybit_launch_attribute *attrs;
    unsigned int numAttrs;
} anybit_launch_config;

/* CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION */
#define ANYBIT_PROGRAMMATIC_STREAM_SERIALIZATION 6

typedef CUresult (*launch_kernel_fn)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                     unsigned int, unsigned int, unsigned int, CUstream, void **, void **);
typedef CUresult (*launch_kernel_ex_fn)(const anybit_launch_config *, CUfunction, void **, void **);

static launch_kernel_fn launch_kernel = NULL;
static launch_kernel_ex_fn launch_kernel_ex = NULL;

/* Open libcuda and find both entry points; 0 on success, -1 with a Python exception set. */
static int resolve_driver(void) {
    void *library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (library == NULL) {
        PyErr_Format(PyExc_OSError, "anybit compiled launch: cannot open libcuda.so.1 (%s); launching needs "
                     "an NVIDIA driver", dlerror());
        return -1;
    }
    launch_kernel_ex = (launch_kernel_ex_fn)dlsym(library, "cuLaunchKernelEx"); /* CUDA 12+ drivers */
    launch_kernel = (launch_kernel_fn)dlsym(library, "cuLaunchKernel");
    if (launch_kernel == NULL) {
        PyErr_SetString(PyExc_OSError, "anybit compiled launch: libcuda.so.1 has no cuLaunchKernel");
        return -1;
    }
    return 0;
}

/* driver() -> whether cuLaunchKernelEx exists (dependent launches); raises OSError without a driver. */
static PyObject *driver(PyObject *self, PyObject *unused) {
    if (launch_kernel == NULL && resolve_driver() < 0) return NULL;
    return PyBool_FromLong(launch_kernel_ex != NULL);
}

/* Read ``count`` Python ints into ``out`` (unsigned 64-bit); 0 on success, -1 with an exception set. */
static int read_ints(PyObject *const *args, Py_ssize_t count, unsigned long long *out) {
    for (Py_ssize_t i = 0; i < count; i++) {
        out[i] = PyLong_AsUnsignedLongLong(args[i]);
        if (out[i] == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "anybit compiled launch: argument %zd must be a non-negative int",
                         i);
            return -1;
        }
    }
    return 0;
}

/* launch(function, gx, gy, gz, bx, by, bz, shared, stream, params, extra) -> CUresult */
static PyObject *launch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned long long v[11];
    if (nargs != 11) {
        PyErr_Format(PyExc_TypeError, "anybit compiled launch: launch takes 11 ints, got %zd", nargs);
        return NULL;
    }
    if (read_ints(args, 11, v) < 0) return NULL;
    if (launch_kernel == NULL && resolve_driver() < 0) return NULL;
    CUresult status = launch_kernel((CUfunction)(uintptr_t)v[0], (unsigned int)v[1], (unsigned int)v[2],
                                    (unsigned int)v[3], (unsigned int)v[4], (unsigned int)v[5],
                                    (unsigned int)v[6], (unsigned int)v[7], (CUstream)(uintptr_t)v[8],
                                    (void **)(uintptr_t)v[9], (void **)(uintptr_t)v[10]);
    return PyLong_FromLong(status);
}

/* The error of a dependent launch where the driver has no cuLaunchKernelEx; returns NULL. */
static PyObject *no_launch_ex(void) {
    PyErr_SetString(PyExc_OSError, "anybit compiled launch: this driver has no cuLaunchKernelEx (CUDA 12+) for "
                    "dependent launches; set ANYBIT_PDL=0");
    return NULL;
}

/* cuLaunchKernelEx of v = (function, gx, gy, gz, block_threads, shared, stream, ...) with ``params``, with
 * programmatic stream serialization allowed (the kernel may start while the previous one still runs). */
static CUresult launch_as_dependent(const unsigned long long *v, void **params) {
    anybit_launch_attribute attribute = {0};
    attribute.id = ANYBIT_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    anybit_launch_config config = {0};
    config.gridDimX = (unsigned int)v[1];
    config.gridDimY = (unsigned int)v[2];
    config.gridDimZ = (unsigned int)v[3];
    config.blockDimX = (unsigned int)v[4];
    config.blockDimY = 1;
    config.blockDimZ = 1;
    config.sharedMemBytes = (unsigned int)v[5];
    config.hStream = (CUstream)(uintptr_t)v[6];
    config.attrs = &attribute;
    config.numAttrs = 1;
    return launch_kernel_ex(&config, (CUfunction)(uintptr_t)v[0], params, NULL);
}

/* launch_dependent(function, gx, gy, gz, block_threads, shared, stream, params) -> CUresult: a launch with
 * programmatic stream serialization allowed (the kernel may start while the previous one still runs). */
static PyObject *launch_dependent(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned long long v[8];
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "anybit compiled launch: launch_dependent takes 8 ints, got %zd",
                     nargs);
        return NULL;
    }
    if (read_ints(args, 8, v) < 0) return NULL;
    if (launch_kernel == NULL && resolve_driver() < 0) return NULL;
    if (launch_kernel_ex == NULL) return no_launch_ex();
    return PyLong_FromLong(launch_as_dependent(v, (void **)(uintptr_t)v[7]));
}

/* The most parameter bytes a launch takes (CUDA's classic limit; anybit's kernels take a few dozen). */
#define ANYBIT_MAX_FRAME 4096
#define ANYBIT_MAX_PARAMS 512

/* Fill ``buffer`` from a bound launch's frame (every parameter's bytes, fixed ones filled in), the offsets of
 * its parameters (uint32 each) and of its pointer slots (uint32 each), and the pointers of this call; point
 * ``params`` at each parameter. Returns the parameter count, or -1 with an exception set. */
static Py_ssize_t fill_frame(PyObject *frame, PyObject *offsets, PyObject *slots, PyObject *const *pointers,
                             Py_ssize_t count, char *buffer, void **params) {
    if (!PyBytes_CheckExact(frame) || !PyBytes_CheckExact(offsets) || !PyBytes_CheckExact(slots)) {
        PyErr_SetString(PyExc_TypeError, "anybit compiled launch: frame, offsets and slots must be bytes");
        return -1;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(frame);
    Py_ssize_t nparams = PyBytes_GET_SIZE(offsets) / 4;
    if (size > ANYBIT_MAX_FRAME || nparams > ANYBIT_MAX_PARAMS || PyBytes_GET_SIZE(slots) != 4 * count) {
        PyErr_Format(PyExc_ValueError, "anybit compiled launch: a frame of %zd bytes and %zd parameters with "
                     "%zd slot offsets for %zd pointers (at most %d bytes and %d parameters, an offset a "
                     "pointer)", size, nparams, PyBytes_GET_SIZE(slots) / 4, count, ANYBIT_MAX_FRAME,
                     ANYBIT_MAX_PARAMS);
        return -1;
    }
    memcpy(buffer, PyBytes_AS_STRING(frame), (size_t)size);
    const uint32_t *slot = (const uint32_t *)PyBytes_AS_STRING(slots);
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned long long address = PyLong_AsUnsignedLongLong(pointers[i]);
        if (address == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "anybit compiled launch: pointer %zd must be a non-negative int", i);
            return -1;
        }
        if ((Py_ssize_t)slot[i] + 8 > size) {
            PyErr_Format(PyExc_ValueError, "anybit compiled launch: pointer slot %zd at byte %u is outside "
                         "the %zd-byte frame", i, slot[i], size);
            return -1;
        }
        memcpy(buffer + slot[i], &address, 8);
    }
    const uint32_t *offset = (const uint32_t *)PyBytes_AS_STRING(offsets);
    for (Py_ssize_t i = 0; i < nparams; i++) {
        if ((Py_ssize_t)offset[i] >= size) {
            PyErr_Format(PyExc_ValueError, "anybit compiled launch: parameter %zd at byte %u is outside the "
                         "%zd-byte frame", i, offset[i], size);
            return -1;
        }
        params[i] = buffer + offset[i];
    }
    return nparams;
}

/* frame(frame, offsets, slots, *pointers) -> bytes: the parameter bytes launch_frame would pass (for tests). */
static PyObject *frame_bytes(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    char buffer[ANYBIT_MAX_FRAME] __attribute__((aligned(16)));
    void *params[ANYBIT_MAX_PARAMS];
    if (nargs < 3) {
        PyErr_Format(PyExc_TypeError, "anybit compiled launch: frame takes at least 3 arguments, got %zd", nargs);
        return NULL;
    }
    if (fill_frame(args[0], args[1], args[2], args + 3, nargs - 3, buffer, params) < 0) return NULL;
    return PyBytes_FromStringAndSize(buffer, PyBytes_GET_SIZE(args[0]));
}

/* launch_frame(function, gx, gy, gz, block_threads, shared, stream, dependent, frame, offsets, slots,
 * *pointers) -> CUresult: a bound launch. The parameters are packed into a buffer on this call's stack (so
 * threads launching the same kernel never share one), the fixed ones copied from ``frame``, each pointer
 * written at its slot; ``dependent``: cuLaunchKernelEx with programmatic stream serialization allowed. */
static PyObject *launch_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned long long v[8];
    char buffer[ANYBIT_MAX_FRAME] __attribute__((aligned(16)));
    void *params[ANYBIT_MAX_PARAMS];
    if (nargs < 11) {
        PyErr_Format(PyExc_TypeError, "anybit compiled launch: launch_frame takes at least 11 arguments, got "
                     "%zd", nargs);
        return NULL;
    }
    if (read_ints(args, 8, v) < 0) return NULL;
    if (fill_frame(args[8], args[9], args[10], args + 11, nargs - 11, buffer, params) < 0) return NULL;
    if (launch_kernel == NULL && resolve_driver() < 0) return NULL;
    CUresult status;
    if (v[7]) {
        if (launch_kernel_ex == NULL) return no_launch_ex();
        status = launch_as_dependent(v, params);
    } else {
        status = launch_kernel((CUfunction)(uintptr_t)v[0], (unsigned int)v[1], (unsigned int)v[2],
                               (unsigned int)v[3], (unsigned int)v[4], 1, 1, (unsigned int)v[5],
                               (CUstream)(uintptr_t)v[6], params, NULL);
    }
    return PyLong_FromLong(status);
}

/* layout() -> the struct sizes and offsets this file assumes, for the test that checks them against cuda.h */
static PyObject *layout(PyObject *self, PyObject *unused) {
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n}", "attribute_size", (Py_ssize_t)sizeof(anybit_launch_attribute),
        "attribute_value_offset", (Py_ssize_t)offsetof(anybit_launch_attribute, value), "config_size",
        (Py_ssize_t)sizeof(anybit_launch_config), "config_stream_offset",
        (Py_ssize_t)offsetof(anybit_launch_config, hStream), "config_attrs_offset",
        (Py_ssize_t)offsetof(anybit_launch_config, attrs), "config_num_attrs_offset",
        (Py_ssize_t)offsetof(anybit_launch_config, numAttrs));
}

static PyMethodDef methods[] = {
    {"launch", (PyCFunction)(void (*)(void))launch, METH_FASTCALL, "cuLaunchKernel from ints"},
    {"launch_dependent", (PyCFunction)(void (*)(void))launch_dependent, METH_FASTCALL,
     "cuLaunchKernelEx with programmatic stream serialization, from ints"},
    {"launch_frame", (PyCFunction)(void (*)(void))launch_frame, METH_FASTCALL,
     "a bound launch: fixed parameter bytes plus this call's pointers, plain or dependent"},
    {"frame", (PyCFunction)(void (*)(void))frame_bytes, METH_FASTCALL, "the bytes launch_frame would pass"},
    {"driver", driver, METH_NOARGS, "open libcuda; whether it has cuLaunchKernelEx"},
    {"layout", layout, METH_NOARGS, "the driver structs' sizes and offsets as this module declares them"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "anybit_compiled_launch", NULL, -1, methods};

PyMODINIT_FUNC PyInit_anybit_compiled_launch(void) { return PyModule_Create(&module); }
