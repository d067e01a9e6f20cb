#include <rte_errno.h>

#include "shim.h"

int bh_rte_errno(void)
{
	return rte_errno;
}
